"""Webhook request signatures: HubSpot's v3 scheme, and our HMAC-SHA256 header for the generic and Salesforce routes.

Every check compares in constant time and raises SignatureError with a message a client may see: it says which header
is missing, how stale a timestamp is, or that the signature does not match, and never contains the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

HUBSPOT_SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
HUBSPOT_TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
# Our own header for senders we configure ourselves (a Salesforce relay, scripts): "sha256=<hex HMAC of the body>".
HMAC_HEADER = "X-Salesloop-Signature"
HUBSPOT_MAX_AGE_S = 300  # HubSpot's documented limit: reject requests whose timestamp is older than 5 minutes

# HubSpot signs the URI with these escapes decoded (its request-validation docs list exactly these), so a URI we
# see as ".../hook?a=b%3Ac" was signed as ".../hook?a=b:c". Every other escape stays as sent.
_HUBSPOT_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                    "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_HUBSPOT_ESCAPES = re.compile("|".join(_HUBSPOT_DECODED), re.IGNORECASE)
_HMAC_VALUE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class SignatureError(Exception):
    """The request is not signed by the sender we share the secret with; answer 401."""


def hubspot_signed_uri(uri: str) -> str:
    """The URI as HubSpot puts it into the v3 source string."""
    return _HUBSPOT_ESCAPES.sub(lambda m: _HUBSPOT_DECODED[m.group().upper()], uri)


def sign_hubspot_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(app secret, method + URI + body + timestamp)), the X-HubSpot-Signature-v3 value."""
    # Concatenating bytes equals UTF-8 encoding HubSpot's string, and never fails on a body that is not UTF-8.
    source = method.upper().encode() + hubspot_signed_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(_hmac(secret, source)).decode("ascii")


def verify_hubspot_v3(secret: str, method: str, uri: str, body: bytes, signature: str | None, timestamp: str | None,
                      now_ms: int, max_age_s: int = HUBSPOT_MAX_AGE_S) -> None:
    """Check a HubSpot request. `uri` is the full URL HubSpot called (scheme, host, path, query), as configured in the app."""
    if not signature:
        raise SignatureError(f"missing {HUBSPOT_SIGNATURE_HEADER} header: HubSpot signs every webhook request with it")
    if not timestamp:
        raise SignatureError(f"missing {HUBSPOT_TIMESTAMP_HEADER} header: HubSpot sends it with every v3 signature")
    _check_age(timestamp, now_ms, max_age_s)
    expected = sign_hubspot_v3(secret, method, uri, body, timestamp)
    if not _same(expected, signature):
        raise SignatureError(f"{HUBSPOT_SIGNATURE_HEADER} does not match the request: check the app's client secret "
                             "and that the URL HubSpot calls is the one the service signs (service.public_url behind a proxy)")


def sign_hmac_sha256(secret: str, body: bytes) -> str:
    """The X-Salesloop-Signature value for a body: "sha256=" and the hex HMAC-SHA256 of the exact bytes sent."""
    return "sha256=" + _hmac(secret, body).hex()


def verify_hmac_sha256(secret: str, body: bytes, header: str | None) -> None:
    if not header:
        raise SignatureError(f"missing {HMAC_HEADER} header: sign the body as sha256=<hex HMAC-SHA256 with the shared secret>")
    match = _HMAC_VALUE.fullmatch(header.strip())
    if match is None:
        raise SignatureError(f"{HMAC_HEADER} must be sha256= followed by 64 hex digits")
    if not _same(_hmac(secret, body).hex(), match.group(1).lower()):
        raise SignatureError(f"{HMAC_HEADER} does not match the body: check the shared secret and sign the exact bytes sent")


def _check_age(timestamp: str, now_ms: int, max_age_s: int) -> None:
    # At most 15 digits (year 33658): int() of thousands of digits fails, and of hundreds overflows the float below.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 15:
        raise SignatureError(f"{HUBSPOT_TIMESTAMP_HEADER} must be milliseconds since the epoch")
    age_s = (now_ms - int(timestamp)) / 1000
    if age_s > max_age_s:
        raise SignatureError(f"stale request: {HUBSPOT_TIMESTAMP_HEADER} is {age_s:.0f} s old, over the {max_age_s} s limit")
    # A timestamp far ahead of our clock would stay "fresh" for longer than the window is meant to allow.
    if -age_s > max_age_s:
        raise SignatureError(f"{HUBSPOT_TIMESTAMP_HEADER} is {-age_s:.0f} s in the future: check the server clock")


def _hmac(secret: str, message: bytes) -> bytes:
    if not secret:
        # A server misconfiguration, not the client's fault: an empty key would accept anyone's signature.
        raise ValueError("no webhook secret configured: set the source's secret before accepting webhooks")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _same(expected: str, given: str) -> bool:
    # Bytes, because compare_digest refuses str with non-ASCII characters, which a client may well send.
    return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("utf-8", "replace"))
