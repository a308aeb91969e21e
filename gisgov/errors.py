"""Domain errors, each with the HTTP status the API maps it to (one place: gisgov.api.errors).

A message is bilingual, ``"中文 English"``: pass it whole (``NotFound("未找到 not found: x")``) or in its
two parts (``NotFound(zh="未找到", en="not found: x")``); ``details`` carries structured extras that the
API answers under ``details``. :func:`split_message` recovers the two parts of a whole message.
"""

from __future__ import annotations

import re
from typing import Any

#: runs of Chinese text (CJK ideographs, CJK and full-width punctuation), spaces inside a run kept
_CJK = r"[\u2e80-\u2fff\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
_ZH_RUN = re.compile(rf"{_CJK}+(?:[ \t]*{_CJK}+)*")
_RULE = re.compile(r"\(rule: ([a-z0-9_]+)\)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_message(message: str) -> tuple[str | None, str | None]:
    """``(zh, en)`` of a bilingual message: ``zh`` is its Chinese runs (joined by a space), ``en`` the rest
    with the spaces tidied; either is ``None`` when the message has no such part."""
    text = " ".join(str(message).split())
    runs = _ZH_RUN.findall(text)
    if not runs:
        return None, (text or None)
    zh = " ".join(r.strip() for r in runs)
    en = " ".join(_ZH_RUN.sub(" ", text).split())
    en = en.strip(" :;,.-—").strip()
    if en.startswith(")"):
        en = en[1:].strip()
    return zh, (en or None)


def error_code(message: str, error_class: str) -> str:
    """A stable machine code: the ``(rule: xxx)`` the message names, else the error class in snake_case
    (``NotFound`` → ``not_found``)."""
    m = _RULE.search(str(message))
    if m:
        return m.group(1)
    return _CAMEL.sub("_", error_class).lower()


class GisgovError(Exception):
    """Base class: a message a planner can act on."""

    status_code = 400

    def __init__(
        self, message: str | None = None, *args: Any, zh: str | None = None, en: str | None = None, details: Any = None
    ) -> None:
        if message is None:
            message = " ".join(x for x in (zh, en) if x)
        super().__init__(message, *args)
        self.zh, self.en = zh, en
        if details is not None:
            self.details = details

    def parts(self) -> tuple[str | None, str | None]:
        """``(zh, en)``: as given, else split from the message."""
        zh, en = split_message(str(self))
        return (getattr(self, "zh", None) or zh), (getattr(self, "en", None) or en)


class DatabaseUnavailable(GisgovError):
    status_code = 503


class NotFound(GisgovError):
    status_code = 404


class InvalidInput(GisgovError, ValueError):
    status_code = 422


class InvalidGeometry(InvalidInput):
    status_code = 422


class Conflict(GisgovError):
    """The request clashes with the current state of what it names (HTTP 409)."""

    status_code = 409


class StorageFull(GisgovError):
    """The server's disk (or the file size limit) is full: nothing was written (HTTP 507)."""

    status_code = 507


class PlanConflict(Conflict):
    status_code = 409


class NotAuthenticated(GisgovError):
    """No valid session or token: sign in first."""

    status_code = 401


class Forbidden(GisgovError):
    """Signed in, but the role lacks the permission (objects outside the scope answer 404 instead)."""

    status_code = 403
