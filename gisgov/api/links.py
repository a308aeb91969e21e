"""Absolute links built from configuration (``GISGOV_PUBLIC_URL``, else ``http://<host>:<port>``),
never from the request's ``Host`` / ``X-Forwarded-*`` headers, which any client can forge (a forged
Host would otherwise put an attacker's origin into paging links, ``Location`` headers and e-mails).

    absolute_url(settings, "/api/layers/grid?limit=10&offset=10")
    request_link(request, offset=20, limit=10)   # this request's path and query, parameters replaced
    route_link(request, "import_status", job_id=7)
"""

from __future__ import annotations

from fastapi import Request


def absolute_url(settings, path_and_query: str) -> str:
    """``settings.origin`` + an app path (with optional query). The path must start with '/'
    (a full URL raises ValueError); whatever follows, the link's host is the configured one."""
    if not path_and_query.startswith("/"):
        raise ValueError(f"not an app path: {path_and_query!r}")
    return settings.origin.rstrip("/") + path_and_query


def request_link(request: Request, **params) -> str:
    """Absolute link to the current request's path and query, with ``params`` set (paging links)."""
    url = request.url.include_query_params(**params) if params else request.url
    return absolute_url(request.app.state.settings, url.path + (f"?{url.query}" if url.query else ""))


def route_link(request: Request, name: str, **path_params) -> str:
    """Absolute link to a named route (instead of ``request.url_for``, which uses the Host header)."""
    return absolute_url(request.app.state.settings, str(request.app.url_path_for(name, **path_params)))
