"""schemathesis against the app's OpenAPI schema, signed in as each of the six roles: no 5xx.

The schema is the app's own ``/openapi.json`` (behind sign-in, so fetched with a bearer token).
Every operation except the heavy analyses (coverage compute/site/areas/gaps/map, grid
propose/repair/feasibility, import; see :data:`HEAVY`) is fuzzed for every role with a small,
derandomized budget: half of the cases take the fuzzer's own path values, half the codes of the
role's own node (so in-scope code paths run too), in both positive (schema-valid) and negative
(schema-violating) generation modes. Every response must pass ``not_a_server_error`` and the
schema-conformance checks listed in :data:`CHECKS`, and carry no clear ID or mobile number.

Writes land in a database of this module's own (sample city with active grid plans), never in the
shared session databases. ``POST /api/auth/logout`` gets a fresh token per call so the role's
token stays valid.
"""

from __future__ import annotations

import pytest
import schemathesis
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pii_scanner import describe, scan_body
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_headers_conformance
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.security.roles import Role

ROLES = [r.value for r in Role]
MAX_EXAMPLES = 12  # per operation, per role

# Long-running analyses and the import: their authorization is covered by the matrix
# (test_authz_matrix.py); they are too slow to fuzz on two cores.
HEAVY = frozenset({
    "POST /api/coverage/compute", "POST /api/coverage/site", "GET /api/coverage/areas", "GET /api/coverage/gaps",
    "GET /coverage/map", "POST /api/grids/propose", "POST /api/grids/repair", "POST /api/grids/feasibility",
    "POST /api/import",
})

# Checks every response must pass. Not used: content_type_conformance (exports, CSV codes and the
# HTML map answer media types the schema does not declare), status_code_conformance (FastAPI's schema documents
# only 200/422, not the 401/403/404/409/415 the security layer answers), response_schema_conformance
# (the app's own 4xx bodies are {"detail": "<message>", "error": ...}, not the documented
# HTTPValidationError list), negative_data_rejection and positive_data_acceptance (a valid request
# for a code outside the caller's scope answers 404), and the stateful checks (they need links the
# schema does not declare).
CHECKS = [not_a_server_error, response_headers_conformance]


def _schema_operations() -> list[str]:
    spec = create_app(Settings()).openapi()
    return [f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item]


OPERATIONS = _schema_operations()
FUZZED = [op for op in OPERATIONS if op not in HEAVY]
# The same for every caller (no sign-in needed, argon2 per attempt): fuzzed once, not per role.
ROLE_INDEPENDENT = frozenset({"POST /api/auth/login", "POST /api/auth/token", "GET /health"})
CASES = [pytest.param(key, role, id=f"{key}|{role}") for key in FUZZED for role in ROLES
         if key not in ROLE_INDEPENDENT or role == "admin"]


def test_heavy_exclusions_name_real_operations():
    stale = sorted(HEAVY - set(OPERATIONS))
    assert not stale, f"excluded operations that no longer exist: {stale}"
    assert len(FUZZED) >= 30, FUZZED


def _nodes(url: str) -> dict:
    """Codes of community A (first of street S1) and of things in it, as path parameter values."""
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            street = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
            comm = c.execute(text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 1"),
                             {"s": street}).scalar_one()
            r = c.execute(text("""
                SELECT g.code AS grid, p.version,
                       (SELECT code FROM compound WHERE community_code = :c ORDER BY code LIMIT 1) AS compound,
                       (SELECT code FROM building WHERE community_code = :c ORDER BY code LIMIT 1) AS building,
                       (SELECT code FROM facility WHERE community_code = :c ORDER BY code LIMIT 1) AS facility,
                       (SELECT min(r.id) FROM resident r JOIN household h ON h.id = r.household_id
                         JOIN building b ON b.code = h.building_code WHERE b.grid_id = g.id) AS resident,
                       (SELECT min(id) FROM road_edge) AS road
                FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                WHERE g.community_code = :c ORDER BY g.code LIMIT 1"""), {"c": comm}).mappings().one()
    finally:
        eng.dispose()
    return dict(r) | {"street": street, "community": comm, "resident": str(r["resident"]), "road": str(r["road"])}


def _scope(role: str, n: dict) -> str:
    return {"admin": "", "street_leader": n["street"], "planner": n["street"], "community_staff": n["community"],
            "viewer": n["community"], "grid_worker": n["grid"]}[role]


@pytest.fixture(scope="module")
def fuzz_world(db_factory, sample_city):
    from security_city import build_gridded_city

    url = build_gridded_city(db_factory, sample_city, "gisgov_test_fuzz")
    nodes = _nodes(url)
    users = {role: ensure_user(url, role, _scope(role, nodes)) for role in ROLES}
    eng = app_engine(url)
    app = create_app(Settings(login_rate_per_minute=100_000), engine=eng)
    with TestClient(app) as c:
        tokens = {role: bearer_token(c, users[role]) for role in ROLES}
        schema = schemathesis.openapi.from_asgi(
            "/openapi.json", app, headers={"Authorization": f"Bearer {tokens['admin']}"})
        yield {"client": c, "schema": schema, "nodes": nodes, "users": users, "tokens": tokens}
    eng.dispose()


def _seeded_path(path: str, n: dict) -> dict | None:
    """Path parameters naming the role's own node (or its things) for ``path``; None if it has none."""
    kind = path.split("/")[2] if path.startswith("/api/") else ""
    if path.startswith("/api/grids/sessions/"):
        return None
    if path.startswith("/api/stats/{level}"):
        return {"level": "community", "code": n["community"]}
    if path.startswith("/api/grids/") and "{community}" in path:
        return {"community": n["community"]} | ({"version": n["version"]} if "{version}" in path else {})
    if "{code}" in path and kind in n:
        return {"code": n[kind]}
    if path == "/api/layers/{level}":
        return {"level": "community"}
    return None


def _seeded_query(key: str, n: dict) -> list[dict]:
    if key == "GET /api/export":
        return [{"level": lvl, "format": fmt, "community": n["community"]}
                for lvl in ("community", "grid", "compound", "building", "facility", "resident")
                for fmt in ("geojson", "csv", "xlsx", "gpkg", "shp")]
    if key == "GET /api/coverage/summary":
        return [{"level": "community", "code": n["community"]}, {"level": "grid", "code": n["grid"]}]
    if key == "GET /api/grids/diff/{community}":
        return [{"a": n["version"], "b": n["version"]}]
    return []


def _strategy(op, key: str, n: dict):
    path = key.split(" ", 1)[1]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    parts = [op.as_strategy(generation_mode=m) for m in modes]
    seeded_path = _seeded_path(path, n)
    if seeded_path is not None:
        parts += [op.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=seeded_path)]
    queries = _seeded_query(key, n)
    if queries:
        parts += [st.sampled_from(queries).flatmap(
            lambda q: op.as_strategy(generation_mode=GenerationMode.POSITIVE, query=q,
                                     path_parameters=seeded_path))]
    return st.one_of(*parts)


@pytest.mark.parametrize(("key", "role"), CASES)
def test_no_server_error(fuzz_world, key, role):
    w = fuzz_world
    method, path = key.split(" ", 1)
    op = w["schema"][path][method]
    headers = {"Authorization": f"Bearer {w['tokens'][role]}"}
    seen: list[int] = []

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=_strategy(op, key, w["nodes"]))
    def run(case):
        h = headers
        if key == "POST /api/auth/logout":  # a token of its own, so the role's token stays valid
            h = {"Authorization": f"Bearer {bearer_token(w['client'], w['users'][role])}"}
        response = case.call(headers=h)
        seen.append(response.status_code)
        ctype = (response.headers.get("content-type") or [None])[0]  # schemathesis keeps header lists
        found = scan_body(ctype, response.content)
        assert not found, f"clear personal data in {case.method} {case.formatted_path} as {role}: {describe(found)}"
        case.validate_response(response, checks=CHECKS, headers=h)

    run()
    assert seen, "no request was made"
    assert not [s for s in seen if s >= 500], seen
