"""Standard Webhooks headers, signed by the ``standardwebhooks`` library."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from math import floor

from standardwebhooks import Webhook


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)  # decodes the secret once per secret, not per delivery


def webhook_headers(
    message_id: str, at: datetime, body: str, secrets: Sequence[str]
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``: one ``v1,...``
    per secret, space-separated (a rotation's grace period signs with both)."""
    if not secrets:
        raise ValueError("at least one secret signs a webhook")
    signatures = " ".join(_signer(s).sign(message_id, at, body) for s in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": signatures,
    }
