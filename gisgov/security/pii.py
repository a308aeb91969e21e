"""ID numbers (居民身份证号, GB 11643-1999) and phone numbers.

Stored as: HMAC-SHA256 digest (``id_hash``: lookup and de-duplication without the clear value),
AES-256-GCM ciphertext (``id_cipher``: recoverable only with the key, for authorised export),
and the last four characters (``id_last4``: what a grid worker reads back on the phone).
Every output masks them (:func:`mask_id`, :func:`mask_phone`). An output that also carries the
birth year (or date) shows no character of the ID number at all (:data:`ID_HIDDEN`): the last four
plus the birth year would narrow the number to ~33 candidates (:mod:`gisgov.security.reident`).

The key comes from ``GISGOV_SECRET_KEY`` or is generated once into ``GISGOV_HOME/secret.key``
(mode 0600; a looser mode found on an existing file is tightened). Losing it makes the ciphertexts
unreadable; back it up with the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gisgov.config import Settings, get_settings
from gisgov.domain.idcard import check_digit
from gisgov.domain.idnumber import id_problem as _domain_id_problem

_PHONE_RE = re.compile(r"^\+?[\d\- ]{7,20}$")


def id_check_digit(first17: str) -> str:
    """GB 11643-1999 check character (ISO 7064 MOD 11-2) for the first 17 digits
    (:func:`gisgov.domain.idcard.check_digit`)."""
    return check_digit(first17)


def id_problem(value: str) -> str | None:
    """Why an ID number is not valid (Chinese + English), or None when valid: the one check rosters use
    too (:func:`gisgov.domain.idnumber.id_problem`: check character, real birth date, known region)."""
    return _domain_id_problem((value or "").strip())


def is_valid_id(value: str) -> bool:
    return id_problem(value) is None


ID_HIDDEN = "*" * 18


def mask_id(last4: str | None) -> str | None:
    """``**************1234``: the masked form for outputs WITHOUT birth year/date (use
    :func:`mask_id_for` when unsure)."""
    return None if not last4 else "*" * 14 + last4


def mask_id_for(last4: str | None, *, birth_shown: bool) -> str | None:
    """The masked ID for an output; with the birth year or date in the same output no character
    of the number is shown (``******************``)."""
    if not last4:
        return None
    return ID_HIDDEN if birth_shown else mask_id(last4)


def mask_phone(phone: str | None) -> str | None:
    """``138****5678`` (keeps the first 3 and last 4 digits)."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _load_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return hashlib.sha256(settings.secret_key.encode()).digest()
    from gisgov.privatefiles import create_once

    text = create_once(settings.home_abs / "secret.key", lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    return base64.b64decode(text)


@dataclass(frozen=True)
class Protected:
    hash: bytes
    cipher: bytes
    last4: str


class Vault:
    """Hashes, encrypts and decrypts personal identifiers with one key."""

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("vault key must be 32 bytes")
        self._mac_key = hmac.new(key, b"gisgov-hmac", hashlib.sha256).digest()
        self._aead = AESGCM(hmac.new(key, b"gisgov-aead", hashlib.sha256).digest())

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Vault:
        return cls(_load_key(settings or get_settings()))

    def digest(self, value: str) -> bytes:
        return hmac.new(self._mac_key, value.strip().upper().encode(), hashlib.sha256).digest()

    def encrypt(self, value: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), None)

    def decrypt(self, blob: bytes) -> str:
        return self._aead.decrypt(bytes(blob[:12]), bytes(blob[12:]), None).decode()

    def protect_id(self, id_number: str) -> Protected:
        v = id_number.strip().upper()
        return Protected(self.digest(v), self.encrypt(v), v[-4:])

    def protect_ids(self, values: Iterable[str]) -> list[Protected]:
        return [self.protect_id(v) for v in values]

    def protect_phone(self, phone: str) -> tuple[bytes, str]:
        p = re.sub(r"[\s\-]", "", phone)
        if not _PHONE_RE.match(phone.strip()):
            raise ValueError(f"电话号码格式错误 phone number malformed: {mask_phone(phone)}")
        return self.encrypt(p), str(mask_phone(p))  # p matched the phone pattern: never empty, so masked
