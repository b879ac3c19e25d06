"""VAPID keys: the formats browsers and pywebpush read, and refusals of malformed keys."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from py_vapid import Vapid

from regulars.errors import ValidationFailed
from regulars.messages import vapid

# RFC 8291 section 5: the application server's key pair of the example.
RFC_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
RFC_PUBLIC = (
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_generated_private_key_is_a_raw_scalar_and_public_key_its_uncompressed_point() -> None:
    keys = vapid.generate_keys()

    scalar = _decode(keys.private_key)
    point = _decode(keys.public_key)
    assert len(keys.private_key) == 43
    assert "=" not in keys.private_key + keys.public_key
    assert len(scalar) == 32
    assert len(point) == 65
    assert point[0] == 0x04
    expected = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1()).public_key()
    assert point == expected.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_each_generation_makes_a_new_pair() -> None:
    assert vapid.generate_keys().private_key != vapid.generate_keys().private_key


def test_public_key_of_matches_the_rfc_8291_example_pair() -> None:
    assert vapid.public_key_of(RFC_PRIVATE) == RFC_PUBLIC


def test_public_key_of_accepts_padding_and_surrounding_whitespace() -> None:
    assert vapid.public_key_of(f"  {RFC_PRIVATE}=\n") == RFC_PUBLIC


def test_pywebpush_signs_with_the_generated_private_key() -> None:
    keys = vapid.generate_keys()

    signer = Vapid.from_string(private_key=keys.private_key)
    header = signer.sign({"sub": "mailto:ops@shop.example", "aud": "https://push.example"})

    token, public = header["Authorization"].removeprefix("vapid t=").split(",k=")
    assert public == keys.public_key
    assert Vapid.verify(header["Authorization"])
    assert token.count(".") == 2


@pytest.mark.parametrize(
    ("private_key", "complaint"),
    [
        ("", "not base64url"),
        ("not a key!", "not base64url"),
        ("a" * 41, "not valid base64url"),
        (_encode(bytes(16)), "not 16 bytes"),
        (_encode(bytes(32)), "not a P-256 key"),
        (_encode(b"\xff" * 32), "not a P-256 key"),
    ],
)
def test_malformed_private_key_is_refused_with_the_reason(private_key: str, complaint: str) -> None:
    with pytest.raises(ValidationFailed, match=complaint) as raised:
        vapid.public_key_of(private_key)
    assert raised.value.status == 422


def test_pem_private_key_is_refused_with_the_expected_format() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        .decode()
    )
    with pytest.raises(ValidationFailed, match="not base64url"):
        vapid.load_private_key(pem)


def test_der_private_key_is_refused_as_not_a_raw_scalar() -> None:
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(ValidationFailed, match="raw 32-byte P-256 key"):
        vapid.load_private_key(_encode(der))


def test_browser_subscription_keys_pass() -> None:
    vapid.validate_subscription_keys(RFC_PUBLIC, "BTBZMqHH6r4Tts7J_aSIgg")


@pytest.mark.parametrize(
    ("p256dh", "auth", "complaint"),
    [
        (_encode(b"\x04" + bytes(64)), "BTBZMqHH6r4Tts7J_aSIgg", "not an uncompressed P-256"),
        (RFC_PUBLIC[:40], "BTBZMqHH6r4Tts7J_aSIgg", "not an uncompressed P-256"),
        ("p256dh?", "BTBZMqHH6r4Tts7J_aSIgg", "p256dh key is not base64url"),
        (RFC_PUBLIC, _encode(bytes(8)), "auth secret must be 16 bytes"),
        (RFC_PUBLIC, "", "auth secret is not base64url"),
    ],
)
def test_malformed_subscription_keys_are_refused(p256dh: str, auth: str, complaint: str) -> None:
    with pytest.raises(ValidationFailed, match=complaint):
        vapid.validate_subscription_keys(p256dh, auth)


def test_compressed_subscription_point_is_refused() -> None:
    point = vapid.load_private_key(RFC_PRIVATE).public_key()
    compressed = point.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    with pytest.raises(ValidationFailed, match="must be 65 bytes"):
        vapid.validate_subscription_keys(_encode(compressed), "BTBZMqHH6r4Tts7J_aSIgg")
