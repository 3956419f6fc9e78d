"""Webhook signatures: the Standard Webhooks scheme, checked against its published test vector
(which any of its libraries reproduces), and what a receiver must refuse."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from center.delivery.signing import (
    SignatureError,
    new_secret,
    parse_secret,
    signature,
    signed_headers,
    verify,
)

# The specification's test vector (standard-webhooks, Svix's docs).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_test_vector() -> None:
    key = parse_secret(VECTOR_SECRET)
    assert signature(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP + 10) == VECTOR_ID


def test_a_signed_delivery_verifies_with_headers_in_any_case() -> None:
    secret = new_secret()
    body = b'{"id": 42, "type": "opened"}'
    headers = signed_headers(parse_secret(secret), "42", 1_767_225_600, body)
    shouted = {name.upper(): value for name, value in headers.items()}
    assert verify(secret, shouted, body, now=1_767_225_600) == "42"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"test": 2432232315}'}, "no signature matches"),
        ({"webhook-id": "msg_other"}, "no signature matches"),  # id is signed: no re-labelling
        ({"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}, "no signature matches"),
        ({"now": VECTOR_TIMESTAMP + 301}, "too old"),  # a replay outside the tolerance
        ({"now": VECTOR_TIMESTAMP - 301}, "clock off"),
        ({"webhook-signature": "v1,AAAA"}, "no signature matches"),
        ({"webhook-signature": None}, "webhook-signature missing"),
        ({"webhook-timestamp": "soon"}, "not a number"),
        ({"secret": "whsec_" + base64.b64encode(b"x" * 24).decode()}, "no signature matches"),
    ],
)
def test_what_a_receiver_refuses(change: dict[str, object], reason: str) -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if name in change:
            value = change[name]
            if value is None:
                del headers[name]
            else:
                headers[name] = str(value)
    body = change.get("body", VECTOR_BODY)
    now = change.get("now", VECTOR_TIMESTAMP)
    secret = change.get("secret", VECTOR_SECRET)
    assert isinstance(body, bytes)
    assert isinstance(now, int)
    assert isinstance(secret, str)
    with pytest.raises(SignatureError, match=reason):
        verify(secret, headers, body, now=now)


def test_one_matching_signature_of_several_is_enough() -> None:
    """A sender rotating its secret may send two signatures, space-separated."""
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": "v1,bm90IGl0 " + VECTOR_SIGNATURE,
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP) == VECTOR_ID


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with 'whsec_'"),
        ("whsec_not base64!", "followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 random bytes, this one 5"),
    ],
)
def test_secrets_that_are_not(secret: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        parse_secret(secret)


def test_new_secrets_differ_and_parse() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(parse_secret(first)) == 32


def test_the_receivers_sample_in_the_docs_verifies() -> None:
    """docs/cases.md shows a receiver how to verify, stdlib only: that code, run as it is."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cases.md").read_text(encoding="utf-8")
    webhooks = docs[docs.index("### Webhooks") :]
    start = webhooks.index("```python\n") + len("```python\n")
    sample = webhooks[start : webhooks.index("```\n", start)]
    namespace: dict[str, Any] = {}
    exec(compile(sample, "docs/cases.md", "exec"), namespace)
    body = b'{"id": 42, "type": "escalated"}'
    now = int(time.time())
    headers = signed_headers(parse_secret(VECTOR_SECRET), "42", now, body)
    assert namespace["verify"](VECTOR_SECRET, headers, body) == 42
    with pytest.raises(ValueError, match="bad signature"):
        namespace["verify"](VECTOR_SECRET, headers, body + b" ")
    stale = signed_headers(parse_secret(VECTOR_SECRET), "42", now - 301, body)
    with pytest.raises(ValueError, match="tolerance"):
        namespace["verify"](VECTOR_SECRET, stale, body)
