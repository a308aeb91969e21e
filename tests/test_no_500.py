"""Inputs that used to answer 500, and the error body every refusal carries.

Named inputs: ``offset`` / ``limit`` / ``version`` beyond int64, a NUL byte in every path parameter of
the grid plan / diff / map / code-table routes and of the layer, stats and session routes, a NUL byte in
a query parameter and in a form field, a NUL byte reaching PostgreSQL through a route (the DataError
safety net). Every answer is 4xx with ``{"detail": str, "error": str}`` (422s may add ``errors``), and
the OpenAPI schema documents the error answers of every operation.
"""

from __future__ import annotations

import pytest
from auth_helpers import signed_in_client
from fastapi import Request
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import Connection, create_engine, pool, text

from gisgov.api.app import PUBLIC_PATHS, create_app
from gisgov.api.deps import DB
from gisgov.api.errors import ErrorBody, ValidationErrorBody
from gisgov.config import Settings

HUGE = "99999999999999999999"  # > 2**63


@pytest.fixture(scope="module")
def nodes(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            comm, version = c.execute(
                text(
                    "SELECT community_code, version FROM grid_plan WHERE status = 'active' "
                    "ORDER BY community_code LIMIT 1"
                )
            ).one()
    finally:
        eng.dispose()
    return {"community": comm, "version": version, "street": comm[:9]}


@pytest.fixture(scope="module")
def client(gridded_city_url):
    with signed_in_client(Settings(), gridded_city_url, role="admin") as c:
        yield c


def error_body(r, status: int | tuple[int, ...]) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    body = r.json()
    model = ValidationErrorBody if r.status_code == 422 else ErrorBody
    model.model_validate(body)
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["error"], str), body
    return body


def test_offset_and_limit_beyond_int64(client):
    for params in ({"offset": HUGE}, {"limit": HUGE}, {"offset": "-1"}, {"offset": "10000001"}):
        body = error_body(client.get("/api/layers/grid", params=params), 422)
        assert body["error"] == "InvalidInput" and next(iter(params)) in body["detail"], body
        assert body["errors"] and body["errors"][0]["loc"] == ["query", next(iter(params))], body
    for params in ({"offset": HUGE}, {"limit": HUGE}):
        error_body(client.get("/api/audit", params=params), 422)


def test_validation_errors_do_not_echo_input(client):
    body = error_body(client.get("/api/layers/grid", params={"offset": "13812345678x"}), 422)
    assert "13812345678" not in str(body), body


def test_huge_ints_reaching_the_database(client, nodes):
    """int path/query values beyond the database's integer types: 4xx, never 500."""
    c = nodes["community"]
    for url in (
        f"/api/grids/plans/{c}/{HUGE}",
        f"/api/grids/plans/{c}/{HUGE}/codes",
        f"/api/grids/diff/{c}?a={HUGE}&b=1",
        f"/api/grids/map/{c}?plan={HUGE}",
        "/api/road/999999999999999999",
        "/api/resident/999999999999999999",
    ):
        error_body(client.get(url), (404, 422))


@pytest.mark.parametrize(
    "template",
    [
        "/api/grids/plans/{x}",
        "/api/grids/plans/{c}/{x}",
        "/api/grids/plans/{c}/{x}/codes",
        "/api/grids/plans/{x}/1/codes",
        "/api/grids/diff/{x}",
        "/api/grids/map/{x}",
        "/api/grids/sessions/{x}",
        "/api/grids/sessions/{x}/layers",
        "/api/layers/{x}",
        "/api/community/{x}",
        "/api/facility/{x}",
        "/api/stats/{x}/340104001",
        "/api/stats/community/{x}",
        "/api/stats/community/{x}/features",
        "/api/import/{x}",
    ],
)
def test_nul_byte_in_path_parameters(client, nodes, template):
    url = template.format(x="a%00b", c=nodes["community"])
    body = error_body(client.get(url), 422)
    assert body["error"] == "InvalidInput" and "NUL" in body["detail"] and "path parameter" in body["detail"], body


def test_nul_byte_in_a_post_path_and_query(client, nodes):
    c = nodes["community"]
    r = client.post(f"/api/grids/plans/{c}/a%00b/activate", json={})
    assert "NUL" in error_body(r, 422)["detail"]
    body = error_body(client.get(f"/api/grids/diff/{c}", params={"a": "1\x00", "b": "1"}), 422)
    assert "NUL" in body["detail"] and "'a'" in body["detail"], body
    body = error_body(client.get("/api/audit", params={"actor": "x\x00y"}), 422)
    assert "'actor'" in body["detail"], body


def test_nul_byte_in_a_form_field_and_static_path(client):
    r = client.post("/api/auth/token", data={"username": "a\x00b", "password": "x"})
    error_body(r, (401, 422))
    for url in ("/static/common/a%00b.js", "/static/vendor/leaflet/a%00b", "/static/dashboard/%00"):
        error_body(client.get(url), 404)


def test_database_refusal_is_422_not_500(gridded_city_url):
    """The safety net: a NUL byte (or an out-of-range number) that reaches PostgreSQL answers 422."""
    with signed_in_client(Settings(), gridded_city_url, role="admin") as c:

        def probe(request: Request, kind: str, conn: Connection = DB) -> dict:
            value = request.headers.get("x-value", "")
            if kind == "text":
                conn.execute(text("SELECT CAST(:v AS text)"), {"v": value.replace("NUL", "\x00")})
            else:
                conn.execute(text("SELECT CAST(:v AS bigint) + 1"), {"v": int(value)})
            return {"ok": True}

        c.app.add_api_route("/api/_probe/{kind}", probe, methods=["GET"])
        assert c.get("/api/_probe/text", headers={"x-value": "fine"}).json() == {"ok": True}
        body = error_body(c.get("/api/_probe/text", headers={"x-value": "aNULb"}), 422)
        assert body["error"] == "InvalidInput" and "NUL" in body["detail"], body
        body = error_body(c.get("/api/_probe/int", headers={"x-value": str(2**63 - 1)}), 422)
        assert "out of range" in body["detail"] and str(2**63 - 1) not in body["detail"], body


def test_routing_errors_have_the_error_body(client):
    body = error_body(client.get("/api/no-such-thing"), 404)
    assert body["error"] == "NotFound"
    r = client.delete("/api/hierarchy")
    assert error_body(r, 405)["error"] == "MethodNotAllowed" and "GET" in r.headers["allow"]
    body = error_body(
        client.post("/api/grids/validate", content=b"\xff\xfe{", headers={"content-type": "application/json"}),
        (400, 422),
    )
    assert body["error"] in ("BadRequest", "InvalidInput")


def test_schema_documents_every_error_answer():
    spec = create_app(Settings()).openapi()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and {"ErrorBody", "ValidationErrorBody"} <= set(schemas)
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "session"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            public = path in PUBLIC_PATHS
            expected = {"503"} | (set() if public else {"401", "403"})
            if op.get("parameters") or "requestBody" in op:
                expected |= {"422"} | (set() if public else {"404"})
            if method == "post":
                expected.add("413")
            assert expected <= set(responses), (method, path, sorted(responses))
            assert ("security" in op) == (not public), (method, path)
            for code, entry in responses.items():
                if int(code) >= 400:
                    ref = entry["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ValidationErrorBody" if code == "422" else "/ErrorBody"), (method, path, code)
    paths = spec["paths"]
    assert "text/csv" in paths["/api/grids/plans/{community}/{version}/codes"]["get"]["responses"]["200"]["content"]
    assert (
        "text/html" in paths["/map"]["get"]["responses"]["200"]["content"]
        and "303" in paths["/map"]["get"]["responses"]
    )
    layers = {p["name"]: p["schema"] for p in paths["/api/layers/{level}"]["get"]["parameters"]}
    limit = next(s for s in layers["limit"].get("anyOf", [layers["limit"]]) if s.get("type") == "integer")
    assert layers["offset"]["maximum"] == 10_000_000 and limit["maximum"] == Settings().max_page_limit
