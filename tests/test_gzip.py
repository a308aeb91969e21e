"""Answers are gzip-compressed for clients that accept it (issue 14): a large GeoJSON layer and the JSON
hierarchy come back with Content-Encoding gzip, much smaller on the wire and identical once decoded; a
client that does not accept gzip gets the plain body; small answers and images are sent as they are."""

from __future__ import annotations

import gzip
import json

import pytest
from auth_helpers import signed_in_client
from security_city import gridded_city_url  # noqa: F401  (fixture)

from gisgov.api.app import GZIP_MIN_BYTES
from gisgov.config import Settings


@pytest.fixture(scope="module")
def client(gridded_city_url):
    with signed_in_client(Settings(login_rate_per_minute=1000), gridded_city_url, role="admin") as c:
        yield c


def raw(client, url: str, encoding: str | None):
    """(status, headers, body bytes exactly as sent) — httpx would decode gzip by itself."""
    headers = {"Accept-Encoding": encoding} if encoding else {"Accept-Encoding": "identity"}
    with client.stream("GET", url, headers=headers) as r:
        return r.status_code, r.headers, b"".join(r.iter_raw())


@pytest.mark.parametrize("url", ["/api/layers/compound?limit=500", "/api/hierarchy"])
def test_large_json_is_gzipped_and_decodes_to_the_same_body(client, url):
    status, headers, body = raw(client, url, "gzip")
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    assert "accept-encoding" in headers.get("vary", "").lower()
    plain_status, plain_headers, plain = raw(client, url, None)
    assert plain_status == 200 and "content-encoding" not in plain_headers
    assert len(plain) >= GZIP_MIN_BYTES
    decoded = gzip.decompress(body)
    assert json.loads(decoded) == json.loads(plain)
    assert len(body) < len(plain) / 3, (len(body), len(plain))  # GeoJSON and JSON compress several times


def test_small_answers_and_images_are_not_compressed(client):
    status, headers, body = raw(client, "/api/auth/me", "gzip")
    assert status == 200 and len(body) < GZIP_MIN_BYTES
    assert "content-encoding" not in headers
    status, headers, _ = raw(client, "/favicon.ico", "gzip")
    assert status == 200 and "content-encoding" not in headers
