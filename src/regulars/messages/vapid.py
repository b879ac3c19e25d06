"""Web Push keys: the VAPID key pair that identifies this server to push services (RFC 8292)
and the checks on a browser subscription's keys (RFC 8291).

Formats, all base64url without padding, the ones the `web-push` tools everywhere use:

- VAPID private key: the raw 32-byte P-256 scalar (43 characters). pywebpush and py_vapid
  read it as is (`Vapid.from_string`); it is the `vapid_private_key` of the webpush provider
  and `REGULARS_VAPID_PRIVATE_KEY`.
- VAPID public key: the uncompressed P-256 point, 65 bytes starting with 0x04 (87
  characters). Browsers take it as `applicationServerKey` in `pushManager.subscribe()`;
  it is `REGULARS_VAPID_PUBLIC_KEY` and the snippet's `data-public-key`.
- A subscription's `p256dh` is such a point too; its `auth` secret is 16 bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from regulars.errors import ValidationFailed

_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_PRIVATE_KEY_BYTES = 32
_AUTH_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class VapidKeys:
    private_key: str
    public_key: str


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str, *, what: str) -> bytes:
    """Decode base64url with or without padding; anything else is a ValidationFailed."""
    text = value.strip()
    if not _B64URL.fullmatch(text):
        raise ValidationFailed(f"{what} is not base64url text")
    unpadded = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except binascii.Error as exc:  # a length no base64 text can have
        raise ValidationFailed(f"{what} is not valid base64url: {exc}") from exc


def generate_keys() -> VapidKeys:
    key = ec.generate_private_key(ec.SECP256R1())
    scalar = key.private_numbers().private_value.to_bytes(_PRIVATE_KEY_BYTES, "big")
    return VapidKeys(private_key=b64url_encode(scalar), public_key=_public_of(key))


def load_private_key(private_key: str) -> ec.EllipticCurvePrivateKey:
    """The key object of a VAPID private key in the format above."""
    raw = b64url_decode(private_key, what="the VAPID private key")
    if len(raw) != _PRIVATE_KEY_BYTES:
        raise ValidationFailed(
            f"the VAPID private key must be a raw 32-byte P-256 key in base64url (43 "
            f"characters), not {len(raw)} bytes; create one with `regulars push keys`"
        )
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError as exc:  # zero or not below the curve order
        raise ValidationFailed(f"the VAPID private key is not a P-256 key: {exc}") from exc


def public_key_of(private_key: str) -> str:
    return _public_of(load_private_key(private_key))


def validate_subscription_keys(p256dh: str, auth: str) -> None:
    """Refuse keys no message could be encrypted for (RFC 8291 section 3)."""
    point = b64url_decode(p256dh, what="the subscription's p256dh key")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise ValidationFailed(
            "the subscription's p256dh key is not an uncompressed P-256 point"
        ) from exc
    if len(point) != 65:  # a compressed point loads, but browsers never send one
        raise ValidationFailed("the subscription's p256dh key must be 65 bytes")
    if len(b64url_decode(auth, what="the subscription's auth secret")) != _AUTH_SECRET_BYTES:
        raise ValidationFailed("the subscription's auth secret must be 16 bytes")


def _public_of(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b64url_encode(point)
