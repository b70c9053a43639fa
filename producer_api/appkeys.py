"""Typed application keys for everything the API's handlers share."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from producer_api.heartbeats import HeartbeatMonitor
from producer_api.metrics import ApiMetrics
from producer_api.openapi import OperationTable
from producer_api.ratelimit import RateLimiter
from schemas.codec import EventCodec
from storage.s3 import ObjectStore
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
ENGINE_KEY = web.AppKey("engine", AsyncEngine)
STORE_KEY = web.AppKey("object_store", ObjectStore)
PRODUCER_KEY = web.AppKey("producer", KafkaProducer)
CODEC_KEY = web.AppKey("codec", EventCodec)
METRICS_KEY = web.AppKey("metrics", ApiMetrics)
LIMITER_KEY = web.AppKey("rate_limiter", RateLimiter)
AUTH_FAILURE_LIMITER_KEY = web.AppKey("auth_failure_limiter", RateLimiter)
"""Failed authentications per client address."""
OPERATIONS_KEY = web.AppKey("operations", OperationTable)
HEARTBEATS_KEY = web.AppKey("heartbeats", HeartbeatMonitor)
