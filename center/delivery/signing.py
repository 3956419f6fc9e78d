"""Webhook signatures as the Standard Webhooks specification has them (standardwebhooks.com,
the scheme of Svix and others), so a receiver can verify with any of its libraries or by hand.

Every delivery carries::

    webhook-id: 42                    the case event's id: the same on every retry (idempotency)
    webhook-timestamp: 1767225600     Unix seconds when this attempt was signed
    webhook-signature: v1,<base64>    HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}"

keyed with the subscriber's secret: ``whsec_`` followed by the base64 of 24 to 64 random bytes
(the key is those bytes). Signing the id and the timestamp with the body binds them: a captured
request cannot be replayed as another event, nor later than the receiver's tolerance.

Pure: no clock reads, ``now`` is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final

SECRET_PREFIX: Final = "whsec_"
MIN_KEY_BYTES: Final = 24
MAX_KEY_BYTES: Final = 64
DEFAULT_TOLERANCE_S: Final = 300
"""How far a receiver should accept ``webhook-timestamp`` from its own clock, either way (the
specification's and Stripe's 5 minutes)."""
ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"


class SignatureError(ValueError):
    """A secret that is not one, or a delivery whose signature does not verify."""


def new_secret(key_bytes: int = 32) -> str:
    """A fresh secret to give one subscriber: ``whsec_`` + base64 of ``key_bytes`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(key_bytes)).decode()


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; refused when it is not one or too short."""
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError(f"a webhook secret starts with {SECRET_PREFIX!r} (then base64)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("a webhook secret is whsec_ followed by base64") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SignatureError(
            f"a webhook secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes,"
            f" this one {len(key)}"
        )
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{message_id}.{timestamp}.{body}``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one delivery attempt."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a delivery as a receiver does; the verified ``webhook-id``, else
    ``SignatureError`` with the reason.

    ``body`` must be the raw bytes received (parsed and re-serialised JSON differs). The
    signature header may carry several space-separated signatures (a sender rotating its
    secret): one that matches is enough. Compare in constant time.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered[ID_HEADER]
        timestamp_text = lowered[TIMESTAMP_HEADER]
        signatures = lowered[SIGNATURE_HEADER]
    except KeyError as missing:
        raise SignatureError(f"header {missing.args[0]} missing") from None
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} {timestamp_text[:40]!r} is not a number"
        ) from None
    skew = now - timestamp
    if abs(skew) > tolerance_s:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {skew:+.0f} s from now (tolerance {tolerance_s:g} s):"
            " too old (a replay?) or a clock off"
        )
    expected = signature(parse_secret(secret), message_id, timestamp, body)
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return message_id
    raise SignatureError("no signature matches")
