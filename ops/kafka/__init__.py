"""Kafka topic specs, replay, backfill and DLQ redrive."""
