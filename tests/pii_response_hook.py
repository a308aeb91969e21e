"""Scanner over every response body of the test run (issue 8), loaded by tests/conftest.py.

Every response a Starlette/FastAPI TestClient receives is scanned with
:func:`pii_scanner.scan_body` for a clear 18-character ID number (valid GB 11643 check character)
or an 11-digit mobile number; admin accounts are not exempt (no route unmasks). A hit raises
:class:`ClearPiiInResponse` in the request that received it, so that test fails there; should the
test swallow the error (or the request ran in another thread), the test fails at teardown.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pii_scanner import describe, scan_body
from starlette import testclient as starlette_testclient


class ClearPiiInResponse(AssertionError):
    """A response body held a clear ID number or mobile number."""


_pii_leaks: list[str] = []
_client_send = TestClient.send  # the httpx (or httpx2) Client.send the TestClient inherits
_not_read = starlette_testclient.httpx.ResponseNotRead  # httpx or httpx2, whichever starlette uses


def scan_response(response) -> None:
    """Raise :class:`ClearPiiInResponse` (and record it for the running test) if ``response`` leaks."""
    try:
        body = response.content
    except _not_read:  # a streamed response the test has not read
        return
    found = scan_body(response.headers.get("content-type"), body)
    if found:
        req = response.request
        msg = (
            f"clear personal data in the response to {req.method} {req.url.path} "
            f"({response.status_code}, {response.headers.get('content-type')}): {len(found)} hit(s): "
            f"{describe(found)}"
        )
        _pii_leaks.append(msg)
        raise ClearPiiInResponse(msg)


def _scanning_send(self, request, **kwargs):
    response = _client_send(self, request, **kwargs)
    if not kwargs.get("stream"):
        scan_response(response)
    return response


@pytest.fixture(scope="session", autouse=True)
def _pii_scanner_installed():
    """Wrap TestClient.send for the whole session (responses fetched by session/module fixtures too)."""
    missing = object()
    before = TestClient.__dict__.get("send", missing)
    TestClient.send = _scanning_send
    yield
    if before is missing:
        del TestClient.send
    else:
        TestClient.send = before


@pytest.fixture(autouse=True)
def _pii_scanner(request):
    _pii_leaks.clear()
    yield
    leaks, call = list(_pii_leaks), getattr(request.node, "rep_call", None)
    _pii_leaks.clear()
    if leaks and call is not None and not call.failed:
        pytest.fail(
            "a response held clear personal data (the test swallowed the error): " + "; ".join(leaks[:3]), pytrace=False
        )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
