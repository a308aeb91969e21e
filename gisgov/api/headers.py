"""Security headers on every response (pure ASGI middleware).

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``X-Frame-Options: DENY``.
- HTML pages get a Content-Security-Policy that allows scripts only from the app itself plus the
  exact inline scripts of that page (their SHA-256 hashes, computed from the body here, so folium's
  generated map code runs and nothing injected does); no ``unsafe-inline`` / ``unsafe-eval`` for
  scripts; ``frame-ancestors 'none'``; images from the app, data: URIs and the configured basemap's tile hosts (exactly
  those of the preset: :func:`gisgov.config.basemap_config`).
- Everything else gets ``default-src 'none'; frame-ancestors 'none'``.
- ``/api`` responses are ``Cache-Control: no-store`` (they may hold personal data).
- An absolute ``Location`` pointing at the request's own ``Host`` (e.g. the router's trailing-slash
  redirect, built from the Host header a client can forge) is rebased onto the configured origin
  (``settings.origin``): links come from configuration, never from the Host header.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from gisgov.config import preset_hosts

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.S | re.I)


def script_hashes(html: bytes) -> list[str]:
    out = []
    for m in _INLINE_SCRIPT.finditer(html):
        body = m.group(1)
        if body.strip():
            out.append("'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'")
    return sorted(set(out))


def _tile_origin(url: str | None) -> str:
    """The basemap's tile hosts for img-src: exactly a preset's hosts (Tianditu t0..t7, AMap webrd01..04,
    Tencent rt0..3) when ``url`` is a preset's, else the URL's host ({s}: the host's siblings)."""
    if not url:
        return ""
    preset = preset_hosts(url)
    if preset:
        return "".join(" " + h for h in preset)
    p = urlsplit(url.replace("{s}", "a"))
    if not p.scheme or not p.netloc:
        return ""
    host = p.netloc
    if "{s}" in url:  # subdomains a/b/c
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return f" {p.scheme}://{host}"


def page_csp(html: bytes, basemap_url: str | None) -> str:
    hashes = " ".join(script_hashes(html))
    tiles = _tile_origin(basemap_url)
    return (
        f"default-src 'self'; script-src 'self' {hashes}; ".replace("  ", " ") + "style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob:{tiles}; "
        "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


API_CSP = "default-src 'none'; frame-ancestors 'none'"


class SecurityHeaders:
    def __init__(self, app, *, basemap_url: str | None = None):
        self.app = app
        self.basemap_url = basemap_url

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        state: dict = {}
        rebase = _location_rebaser(scope)
        head = scope.get("method") == "HEAD"
        ext = scope.get("extensions") or {}
        if "http.response.pathsend" in ext:  # HTML bodies must pass through here to be hashed
            scope = {**scope, "extensions": {k: v for k, v in ext.items() if k != "http.response.pathsend"}}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                headers = [(k, rebase(v) if k.lower() == b"location" else v) for k, v in message.get("headers", [])]
                message = {**message, "headers": headers}
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and not head:
                    state["start"] = message
                    state["body"] = []
                    return
                await send(_with_headers(message, API_CSP, path))
                return
            if message["type"] == "http.response.body" and "start" in state:
                state["body"].append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(state["body"])
                start = state.pop("start")
                start = _with_headers(start, page_csp(body, self.basemap_url), path, length=len(body))
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, wrapped)


def _location_rebaser(scope):
    """A function rewriting a Location value that points at the request's Host onto the configured origin."""
    host = next((v for k, v in scope.get("headers", []) if k == b"host"), b"").decode("latin-1").strip().lower()
    settings = getattr(getattr(scope.get("app"), "state", None), "settings", None)
    origin = getattr(settings, "origin", None)

    def rebase(value: bytes) -> bytes:
        if not origin or not host:
            return value
        try:
            loc = urlsplit(value.decode("latin-1"))
        except ValueError:
            return value
        if loc.scheme not in ("http", "https") or loc.netloc.lower() != host:
            return value
        out = origin.rstrip("/") + (loc.path or "/") + (f"?{loc.query}" if loc.query else "")
        return (out + (f"#{loc.fragment}" if loc.fragment else "")).encode("latin-1")

    return rebase


def _with_headers(message: dict, csp: str, path: str, length: int | None = None) -> dict:
    drop = {b"content-security-policy", b"x-content-type-options", b"x-frame-options", b"referrer-policy"}
    if length is not None:
        drop.add(b"content-length")
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
    headers += [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    if path.startswith("/api") and not any(k.lower() == b"cache-control" for k, _ in headers):
        headers.append((b"cache-control", b"no-store"))
    return {**message, "headers": headers}
