"""Writes take JSON bodies only: a router dependency refusing POST/PUT/PATCH/DELETE requests whose
``Content-Type`` is not JSON (415). A cross-site HTML form can only send form-encoded, multipart or
text/plain bodies (and a cross-site ``fetch`` with JSON needs a CORS preflight, which the app does not
grant), so together with the CSRF check this keeps state-changing routes out of reach of other sites.
"""

from __future__ import annotations

from fastapi import Request

from gisgov.errors import GisgovError

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class UnsupportedMediaType(GisgovError):
    status_code = 415


def is_json(content_type: str | None) -> bool:
    mt = (content_type or "").split(";", 1)[0].strip().lower()
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


async def json_only(request: Request) -> None:
    """Dependency: a write must say ``Content-Type: application/json`` (415 otherwise)."""
    if request.method in WRITE_METHODS and not is_json(request.headers.get("content-type")):
        raise UnsupportedMediaType("只接受 JSON 请求体 writes take a JSON body only (Content-Type: application/json)")
