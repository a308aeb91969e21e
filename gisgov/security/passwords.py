"""Password hashing (argon2id via argon2-cffi) and the password rule."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
# A hash to verify against when the user does not exist, so both cases take the same time.
_DUMMY = _HASHER.hash("gisgov-no-such-user")

MIN_LENGTH = 8


def password_problem(password: str, *, username: str | None = None) -> str | None:
    """Why a password is not acceptable (None if it is): at least 8 characters, letters and digits,
    not the user name."""
    if len(password) < MIN_LENGTH:
        return f"密码至少 {MIN_LENGTH} 位 password must have at least {MIN_LENGTH} characters"
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        return "密码须同时包含字母和数字 password must contain letters and digits"
    if username and username.lower() in password.lower():
        return "密码不能包含用户名 password must not contain the user name"
    return None


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; always spends one argon2 verification."""
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)
