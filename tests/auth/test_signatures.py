"""The shared-secret primitives every webhook verifier uses (``app.auth.signatures``)."""

from __future__ import annotations

import hashlib

import pytest

from app.auth.signatures import constant_time_in, hmac_hex, hmac_matches, require_secrets, timestamp_outside

# RFC 4231 §4.3 (test case 2): key "Jefe", data "what do ya want for nothing?".
RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_SHA256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
RFC4231_SHA512 = (
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
)


def test_configured_secrets_are_encoded_and_never_empty() -> None:
    assert require_secrets("s3cret", "x") == (b"s3cret",)
    assert require_secrets(["old", "nëw"], "x") == (b"old", "nëw".encode())
    for bad in ("", [], ["ok", ""]):
        with pytest.raises(ValueError, match="^x: at least one non-empty secret"):
            require_secrets(bad, "x")


def test_constant_time_in_finds_any_accepted_value_whatever_its_length() -> None:
    accepted = (b"first", b"a-much-longer-second-value")
    assert constant_time_in(b"a-much-longer-second-value", accepted)
    assert constant_time_in(b"first", accepted)
    assert not constant_time_in(b"firs", accepted)
    assert not constant_time_in(b"", accepted)
    assert not constant_time_in(b"first", ())


def test_hmac_is_rfc_2104_with_the_chosen_digest() -> None:
    assert hmac_hex(RFC4231_KEY, RFC4231_DATA) == RFC4231_SHA256
    assert hmac_hex(RFC4231_KEY, RFC4231_DATA, hashlib.sha512) == RFC4231_SHA512


def test_a_signature_matches_under_any_configured_key() -> None:
    keys = (b"old-key", RFC4231_KEY)
    assert hmac_matches([RFC4231_SHA256.encode()], keys, RFC4231_DATA)
    assert hmac_matches([b"0" * 64, RFC4231_SHA256.encode()], keys, RFC4231_DATA)
    assert not hmac_matches([RFC4231_SHA256.encode()], (b"old-key",), RFC4231_DATA)
    assert not hmac_matches([RFC4231_SHA256.encode()], keys, RFC4231_DATA + b" ")
    # Compared as given: the verifier lower-cases what the header carries.
    assert not hmac_matches([RFC4231_SHA256.upper().encode()], keys, RFC4231_DATA)
    assert not hmac_matches([RFC4231_SHA256.encode()], keys, RFC4231_DATA, hashlib.sha512)
    assert hmac_matches([RFC4231_SHA512.encode()], keys, RFC4231_DATA, hashlib.sha512)
    assert not hmac_matches([], keys, RFC4231_DATA)


def test_timestamp_window_bounds_both_ways_inclusive() -> None:
    now = 1_000_000.0
    assert timestamp_outside(now - 300, now, max_age=300, skew=60) is None
    assert timestamp_outside(now - 300.5, now, max_age=300, skew=60) == "too old"
    assert timestamp_outside(now + 60, now, max_age=300, skew=60) is None
    assert timestamp_outside(now + 60.5, now, max_age=300, skew=60) == "in the future"
    assert timestamp_outside(0, now, max_age=None, skew=60) is None
    assert timestamp_outside(now + 61, now, max_age=None, skew=60) == "in the future"
