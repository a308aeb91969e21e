"""schemathesis against the app's OpenAPI schema, signed in as each of the six roles, with every check.

The schema is the app's own ``/openapi.json`` (behind sign-in, so fetched with a bearer token).
Every operation except the heavy analyses (coverage compute/site/areas/gaps/map, grid
propose/repair/feasibility, import; see :data:`HEAVY`) is fuzzed for every role with a small,
derandomized budget: half of the cases take the fuzzer's own path values, half the codes of the
role's own node (so in-scope code paths run too), in both positive (schema-valid) and negative
(schema-violating) generation modes. Every response must pass every check schemathesis has
(:data:`CHECK_NAMES`, the same set as ``--checks all``) and carry no clear ID or mobile number.

What the checks hold the app to: no 5xx (``not_a_server_error``); every status, media type, header and
body documented (``status_code_conformance``, ``content_type_conformance``,
``response_headers_conformance``, ``response_schema_conformance``: errors are ``ErrorBody``, 422s
``ValidationErrorBody``); schema-violating input refused with a 4xx (``negative_data_rejection``);
schema-valid input not refused as invalid (``positive_data_acceptance``: 2xx, 3xx, 401, 403, 404, 409,
429 are acceptable answers to valid data, so a valid code outside the caller's area answering 404 passes
as it is); a route that answers 2xx with the role's token answers 401 without it and with a forged one
(``ignored_auth``: the schema declares the bearer and session-cookie schemes; confirmed on the first 2xx
of each operation, as the CLI does). The stateful checks
(``use_after_free``, ``ensure_resource_availability``, ``object_level_authorization``) and the
coverage-phase probes (``missing_required_header``, ``unsupported_method``, ``allow_header_conformance``)
run too; they judge only the request sequences and probes they recognise, which this per-operation run
does not produce, so they pass without judging here.

Configured, not dropped (:data:`POSITIVE_422`): operations where a schema-valid request can still be
refused with 422 because the rule is not expressible in JSON Schema; each entry says why. For those
operations ``positive_data_acceptance`` also accepts 422; every other check applies as everywhere.

:data:`KNOWN_BROKEN` lists failures in routes this test does not fix (operation → the checks that still
fail there); they are printed on every run and do not fail it. Empty it as the routes are fixed: an
entry whose operation no longer fails makes :func:`test_known_broken_still_fail` fail.

Writes land in a database of this module's own (sample city with active grid plans), never in the
shared session databases. ``POST /api/auth/logout`` gets a fresh token per call so the role's
token stays valid.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import pytest
import schemathesis
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pii_scanner import describe, scan_body
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES
from schemathesis.core.failures import Failure, FailureGroup
from sqlalchemy import create_engine, pool, text

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.security.roles import Role

ROLES = [r.value for r in Role]
MAX_EXAMPLES = 12  # per operation, per role

# Long-running analyses and the import: their authorization is covered by the matrix
# (test_authz_matrix.py); they are too slow to fuzz on two cores.
HEAVY = frozenset(
    {
        "POST /api/coverage/compute",
        "POST /api/coverage/site",
        "GET /api/coverage/areas",
        "GET /api/coverage/gaps",
        "GET /coverage/map",
        "POST /api/grids/propose",
        "POST /api/grids/repair",
        "POST /api/grids/feasibility",
        "POST /api/import",
    }
)

load_all_checks()
CHECK_NAMES = CHECKS.get_all_names()
ALL_CHECKS = CHECKS.get_all()

# positive_data_acceptance also accepts 422 here: valid by the schema, refused by a rule the schema
# cannot state.
POSITIVE_422 = {
    "GET /api/layers/{level}": "bbox is free text in the schema; its four numbers must be in lon/lat range "
    "with min <= max (parse_bbox)",
    "GET /api/stats": "walking profiles come from the editable service-circle catalog (service_circles.yaml)",
    "GET /api/stats/{level}/{code}": "a code's length depends on the level (street 9, community 12, grid 15, "
    "compound 16 digits); profiles come from the editable catalog",
    "GET /api/stats/{level}/{code}/features": "a code's length depends on the level",
    "GET /api/coverage/summary": "a code's length depends on the level; walking profiles come from the editable "
    "catalog",
    "POST /api/coverage/whatif": "service categories come from the editable catalog; lon and lat go together "
    "(one without the other is refused)",
    "POST /api/events": "event categories come from the editable event catalog (events/categories.yaml); the "
    "point must lie inside a street of the city",
    "GET /api/events": "category codes come from the editable event catalog (events/categories.yaml); 'to' may "
    "not be before 'from'",
    "POST /api/events/{event_id}/transition": "department codes come from the editable event catalog; a note is "
    "required to reject or escalate, a department to dispatch (depends "
    "on the target state)",
    "GET /api/events/stats": "community and grid are mutually exclusive (give one of them, or neither)",
    "GET /api/special/beyond": "group codes come from the editable special-services configuration "
    "(services/special_services.yaml)",
    "GET /api/special/visits/overdue": "group codes come from the editable special-services configuration "
    "(only groups with a visit rule)",
    "POST /api/staff/import": "the upload must be an .xlsx workbook with the template's headers (网格编码, 角色, "
    "姓名, 手机号); a file's content cannot be stated in the schema",
    "GET /api/coverage/buildings": "service categories, circles and profiles come from the editable service-circle "
    "catalog (service_circles.yaml)",
    "GET /api/coverage/facilities": "service categories, circles and profiles come from the editable service-circle "
    "catalog",
    "GET /api/coverage/communities": "service categories, circles and profiles come from the editable "
    "service-circle catalog",
}

# positive_data_acceptance also accepts 400 here: a malformed address the schema cannot state, answered 400 as
# tile servers do (the issue asks for it)
POSITIVE_400 = {
    "GET /tiles/{layer}/{z}/{x}/{y}.pbf": "z, x and y are path text: a tile address must be integers with "
    "0 <= x, y < 2^z and z <= 22, which the schema cannot relate",
    "GET /api/context": "bbox is free text in the schema; its four numbers must be in lon/lat range, min < max "
    "and at most 2 degrees a side",
}

# Failures in routes outside this test's fixes: operation -> checks that still fail there (printed, not
# failing the run). Empty it as they are fixed.
KNOWN_BROKEN: dict[str, set[str]] = {}


def _schema_operations() -> list[str]:
    spec = create_app(Settings()).openapi()
    return [f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item]


OPERATIONS = _schema_operations()
FUZZED = [op for op in OPERATIONS if op not in HEAVY]
# The same for every caller (no sign-in needed, argon2 per attempt): fuzzed once, not per role.
ROLE_INDEPENDENT = frozenset({"POST /api/auth/login", "POST /api/auth/token", "GET /health"})
CASES = [
    pytest.param(key, role, id=f"{key}|{role}")
    for key in FUZZED
    for role in ROLES
    if key not in ROLE_INDEPENDENT or role == "admin"
]


def test_heavy_exclusions_name_real_operations():
    stale = sorted((HEAVY | set(POSITIVE_422) | set(POSITIVE_400) | set(KNOWN_BROKEN)) - set(OPERATIONS))
    assert not stale, f"exceptions naming operations that no longer exist: {stale}"
    assert len(FUZZED) >= 30, FUZZED
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "ignored_auth",
    } <= set(CHECK_NAMES), CHECK_NAMES


def _config() -> SchemathesisConfig:
    """schemathesis's defaults, plus 422 accepted for valid data of the :data:`POSITIVE_422` operations and 400
    for those of :data:`POSITIVE_400`.
    Strings are generated without NUL bytes: PostgreSQL text cannot hold one, so every route refuses it
    with 422 (by design, not expressible in the schema); tests/test_no_500.py sends NUL bytes to every
    path parameter, query and body on purpose."""
    return SchemathesisConfig.from_dict(
        {
            "generation": {"allow-x00": False},
            "operations": [
                {
                    "include-name": op,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, status]
                        }
                    },
                }
                for status, ops in (("422", POSITIVE_422), ("400", POSITIVE_400))
                for op in sorted(ops)
            ],
        }
    )


def _nodes(url: str) -> dict:
    """Codes of community A (first of street S1) and of things in it, as path parameter values."""
    eng = create_engine(url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            street = c.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
            comm = c.execute(
                text("SELECT code FROM community WHERE street_code = :s ORDER BY code LIMIT 1"), {"s": street}
            ).scalar_one()
            r = (
                c.execute(
                    text("""
                SELECT g.code AS grid, p.version,
                       (SELECT code FROM compound WHERE community_code = :c ORDER BY code LIMIT 1) AS compound,
                       (SELECT code FROM building WHERE community_code = :c ORDER BY code LIMIT 1) AS building,
                       (SELECT code FROM facility WHERE community_code = :c ORDER BY code LIMIT 1) AS facility,
                       (SELECT min(r.id) FROM resident r JOIN household h ON h.id = r.household_id
                         JOIN building b ON b.code = h.building_code WHERE b.grid_id = g.id) AS resident,
                       (SELECT min(id) FROM road_edge) AS road
                FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
                WHERE g.community_code = :c ORDER BY g.code LIMIT 1"""),
                    {"c": comm},
                )
                .mappings()
                .one()
            )
    finally:
        eng.dispose()
    return dict(r) | {"street": street, "community": comm, "resident": str(r["resident"]), "road": str(r["road"])}


def _scope(role: str, n: dict) -> str:
    return {
        "admin": "",
        "street_leader": n["street"],
        "planner": n["street"],
        "community_staff": n["community"],
        "viewer": n["community"],
        "grid_worker": n["grid"],
    }[role]


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
            "/openapi.json", app, config=_config(), headers={"Authorization": f"Bearer {tokens['admin']}"}
        )
        failures: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        yield {
            "client": c,
            "schema": schema,
            "nodes": nodes,
            "users": users,
            "tokens": tokens,
            "failures": failures,
            "fuzzed": set(),
            "auth_confirmed": set(),
        }
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
        return [
            {"level": lvl, "format": fmt, "community": n["community"]}
            for lvl in ("community", "grid", "compound", "building", "facility", "resident")
            for fmt in ("geojson", "csv", "xlsx", "gpkg", "shp")
        ]
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
        parts += [
            st.sampled_from(queries).flatmap(
                lambda q: op.as_strategy(generation_mode=GenerationMode.POSITIVE, query=q, path_parameters=seeded_path)
            )
        ]
    return st.one_of(*parts)


def _failures(exc: BaseException) -> list[Failure]:
    if isinstance(exc, FailureGroup):
        return [f for e in exc.exceptions for f in _failures(e)]
    return [exc] if isinstance(exc, Failure) else []


def _check_name(f: Failure) -> str:
    return type(f).checks[0] if type(f).checks else type(f).__name__


@pytest.mark.parametrize(("key", "role"), CASES)
def test_every_check(fuzz_world, key, role):
    w = fuzz_world
    method, path = key.split(" ", 1)
    op = w["schema"][path][method]
    headers = {"Authorization": f"Bearer {w['tokens'][role]}"}
    seen: list[int] = []
    found: dict[str, set[str]] = defaultdict(set)  # check -> first lines of its failures

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=_strategy(op, key, w["nodes"]))
    def run(case):
        h = headers
        if key == "POST /api/auth/logout":  # a token of its own, so the role's token stays valid
            h = {"Authorization": f"Bearer {bearer_token(w['client'], w['users'][role])}"}
        response = case.call(headers=h)
        seen.append(response.status_code)
        ctype = (response.headers.get("content-type") or [None])[0]  # schemathesis keeps header lists
        pii = scan_body(ctype, response.content)
        assert not pii, f"clear personal data in {case.method} {case.formatted_path} as {role}: {describe(pii)}"
        checks = ALL_CHECKS
        if key in w["auth_confirmed"]:  # as the CLI does: one confirmation per operation is enough
            checks = [c for c in ALL_CHECKS if c.__name__ != "ignored_auth"]
        try:
            case.validate_response(response, checks=checks, headers=h)
            if 200 <= response.status_code < 300:
                w["auth_confirmed"].add(key)
        except (Failure, FailureGroup) as exc:  # collected, so every example runs and all are reported
            mode = case.meta.generation.mode.value if case.meta else "?"
            for f in _failures(exc) or [exc]:
                text = " | ".join(str(f).strip().splitlines()[:4])
                body = "" if case.body is None or type(case.body).__name__ == "NotSet" else f" body={case.body!r:.160}"
                found[_check_name(f) if isinstance(f, Failure) else type(f).__name__].add(
                    f"{response.status_code} [{mode}] {case.method} {case.formatted_path}"
                    f"{'?' + str(case.query) if case.query else ''}{body} -> {response.text[:160]!r}: {text[:200]}"
                )

    run()
    w["fuzzed"].add(key)
    assert seen, "no request was made"
    for check, lines in found.items():
        w["failures"][key][check] |= lines
    known = KNOWN_BROKEN.get(key, set())
    tolerated = {c: v for c, v in found.items() if c in known and c != "not_a_server_error"}
    failing = {c: v for c, v in found.items() if c not in tolerated}
    for check, lines in sorted(tolerated.items()):  # shown in pytest's warnings summary
        warnings.warn(
            f"KNOWN_BROKEN {key} as {role}: {check}: {len(lines)} case(s), e.g. {sorted(lines)[0]}",
            UserWarning,
            stacklevel=1,
        )
    assert not failing, f"{key} as {role}:\n" + "\n".join(
        f"- {check}: {line}" for check, lines in sorted(failing.items()) for line in sorted(lines)[:3]
    )
    assert not [s for s in seen if s >= 500], seen


def test_known_broken_still_fail(fuzz_world):
    """Runs after the fuzzing: an operation listed in KNOWN_BROKEN that no longer fails is to be removed."""
    fixed = {
        op: sorted(checks - set(fuzz_world["failures"].get(op, {})))
        for op, checks in KNOWN_BROKEN.items()
        if op in fuzz_world["fuzzed"]
    }
    fixed = {op: checks for op, checks in fixed.items() if checks}
    assert not fixed, f"fixed, remove from KNOWN_BROKEN: {fixed}"
