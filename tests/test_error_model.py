"""The one error model of the API: every 4xx / 503 answers ``detail`` (the bilingual message the pages
show), ``error`` (class), ``code`` (the ``rule: xxx`` the message names, else the class in snake_case),
``message_zh`` / ``message_en`` (the two halves; a generic text of the class when a half is missing) and
``details`` (structured extras, also kept at the top level for older clients).

Unit tests drive the handlers on a small app (every domain error class, validation, routing, pool
timeout, database refusal, a body built by hand); a few real requests go through the whole app."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from auth_helpers import signed_in_client
from fastapi import FastAPI
from fastapi.testclient import TestClient
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DataError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import gisgov
from gisgov import errors as domain
from gisgov.api import errors
from gisgov.api.errors import ErrorBody, ValidationErrorBody, error_response
from gisgov.config import Settings
from gisgov.errors import GisgovError, error_code, split_message

# -- the splitter, on messages of the code base ----------------------------------------------------------

REAL = [
    ("未找到 社区 community not found: 110101001001", "未找到 社区", "community not found: 110101001001"),
    (
        "用户名或密码错误，或账号已锁定 wrong user name or password, or account locked",
        "用户名或密码错误，或账号已锁定",
        "wrong user name or password, or account locked",
    ),
    (
        "服务繁忙，请稍后重试 server busy (no free database connection), retry shortly",
        "服务繁忙，请稍后重试",
        "server busy (no free database connection), retry shortly",
    ),
    (
        "请求参数无效 invalid request: query.offset: Input should be less than or equal to 10000000",
        "请求参数无效",
        "invalid request: query.offset: Input should be less than or equal to 10000000",
    ),
    (
        "导出文件已过期删除，请重新导出 the file of export 7 has expired; export again",
        "导出文件已过期删除，请重新导出",
        "the file of export 7 has expired; export again",
    ),
    (
        "无权限 not allowed: road 导入覆盖全市，仅限全市账号 imports of the road network / OSM are city-wide: "
        "whole-city accounts only (rule: out_of_scope)",
        "无权限 导入覆盖全市，仅限全市账号",
        "not allowed: road imports of the road network / OSM are city-wide: whole-city accounts only "
        "(rule: out_of_scope)",
    ),
    (
        "a.zip: 压缩包已加密 encrypted zip members are not supported (rule: zip_encrypted)",
        "压缩包已加密",
        "a.zip: encrypted zip members are not supported (rule: zip_encrypted)",
    ),
    ("level and code go together (rule: area_pair)", None, "level and code go together (rule: area_pair)"),
    ("位置不在您的辖区内", "位置不在您的辖区内", None),
    ("", None, None),
]


@pytest.mark.parametrize(("message", "zh", "en"), REAL, ids=[m[:24] for m, _, _ in REAL])
def test_split_message(message, zh, en):
    assert split_message(message) == (zh, en)


def test_error_code():
    assert error_code("level and code go together (rule: area_pair)", "InvalidInput") == "area_pair"
    assert error_code("未找到 not found", "NotFound") == "not_found"
    assert error_code("x", "InvalidInput") == "invalid_input"
    assert error_code("x", "DatabaseBusy") == "database_busy"
    assert error_code("x", "HTTPError") == "http_error"
    assert error_code("x", "UnsafeAppRole") == "unsafe_app_role"


def test_gisgov_error_takes_its_two_halves():
    e = domain.NotFound(zh="未找到网格", en="grid not found: 1")
    assert str(e) == "未找到网格 grid not found: 1" and e.parts() == ("未找到网格", "grid not found: 1")
    assert domain.InvalidInput("输入无效 bad").parts() == ("输入无效", "bad")
    assert domain.InvalidInput("only english").parts() == (None, "only english")


# -- the handlers ---------------------------------------------------------------------------------------


def _all_error_classes() -> list[type[GisgovError]]:
    for mod in pkgutil.walk_packages(gisgov.__path__, "gisgov."):
        if mod.name.startswith(("gisgov.cli", "gisgov.api.asgi")):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:
            continue
    seen: list[type[GisgovError]] = []
    todo = [GisgovError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


CLASSES = _all_error_classes()


def _instance(cls: type[GisgovError]) -> GisgovError:
    try:
        return cls("出错了 something went wrong (rule: test_rule)")
    except TypeError:
        for args in (("出错了 something went wrong (rule: test_rule)", "reason"), ("f.zip", "zip_encrypted")):
            try:
                return cls(*args)
            except (TypeError, KeyError):
                continue
        raise


@pytest.fixture(scope="module")
def small():
    app = FastAPI()
    errors.install(app)

    @app.get("/api/raise/{i}")
    def _raise(i: int):
        raise _instance(CLASSES[i])

    @app.get("/plain")
    def _plain():
        raise domain.InvalidInput("only English here")

    @app.get("/split")
    def _split():
        raise domain.NotFound(zh="未找到", en="nothing here", details={"id": 7})

    @app.get("/pool")
    def _pool():
        raise PoolTimeout("busy")

    @app.get("/data")
    def _data():
        raise DataError("SELECT", {}, Exception("integer out of range"))

    @app.get("/typed")
    def _typed(n: int):
        return {"n": n}

    @app.get("/byhand")
    def _byhand():
        return error_response(409, "冲突 conflict", "PlanConflict", conflict={"v": 2})

    @app.get("/bug")
    def _bug():
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check(r, status: int) -> dict:
    assert r.status_code == status, r.text[:300]
    body = r.json()
    (ValidationErrorBody if status == 422 else ErrorBody).model_validate(body)
    for key in ("detail", "error", "code", "message_zh", "message_en"):
        assert isinstance(body[key], str) and body[key], (key, body)
    assert isinstance(body["details"], dict), body
    assert int(r.headers["content-length"]) == len(r.content)
    return body


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_class_answers_the_model(small, cls):
    exc = _instance(cls)
    body = check(small.get(f"/api/raise/{CLASSES.index(cls)}"), exc.status_code)
    assert body["error"] == cls.__name__ and body["detail"] == str(exc)
    if "(rule: test_rule)" in str(exc):
        assert body["code"] == "test_rule"
        assert body["message_zh"] == "出错了" and body["message_en"] == "something went wrong (rule: test_rule)"


def test_generic_chinese_when_the_message_has_none(small):
    body = check(small.get("/plain"), 422)
    assert body["message_zh"] == "输入无效" and body["message_en"] == "only English here"
    assert body["code"] == "invalid_input"


def test_explicit_halves_and_details(small):
    body = check(small.get("/split"), 404)
    assert (body["message_zh"], body["message_en"], body["code"]) == ("未找到", "nothing here", "not_found")
    assert body["details"] == {"id": 7} and body["detail"] == "未找到 nothing here"


def test_framework_errors(small):
    body = check(small.get("/typed", params={"n": "x"}), 422)
    assert body["errors"] and body["details"]["errors"] == body["errors"] and body["code"] == "invalid_input"
    assert check(small.get("/no/such/path"), 404)["code"] == "not_found"
    assert check(small.post("/typed"), 405)["error"] == "MethodNotAllowed"
    busy = small.get("/pool")
    assert check(busy, 503)["code"] == "database_busy" and busy.headers["retry-after"] == "2"
    assert check(small.get("/data"), 422)["message_zh"] == "数值超出范围"
    assert check(small.get("/bug"), 500)["code"] == "internal_error"


def test_a_body_built_by_hand_is_completed(small):
    body = check(small.get("/byhand"), 409)
    assert body["conflict"] == {"v": 2} and body["details"] == {"conflict": {"v": 2}}
    assert (body["code"], body["message_zh"], body["message_en"]) == ("plan_conflict", "冲突", "conflict")


def test_success_bodies_pass_untouched(small):
    r = small.get("/typed", params={"n": 3})
    assert r.json() == {"n": 3}


# -- real requests ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    try:
        with eng.connect() as conn:
            street = conn.execute(text("SELECT code FROM street ORDER BY code LIMIT 1")).scalar_one()
    finally:
        eng.dispose()
    with signed_in_client(Settings(), gridded_city_url, role="viewer", scope=street) as c:
        yield c


def test_real_answers(viewer):
    body = check(viewer.get("/api/layers/nosuchlayer"), 404)
    assert body["error"] in ("UnknownLayer", "NotFound")
    check(viewer.get("/api/layers/grid", params={"offset": "-1"}), 422)
    body = check(viewer.post("/api/coverage/compute", json={}), 403)
    assert body["code"] == "forbidden" or body["error"] == "Forbidden"
    body = check(viewer.get("/api/coverage/summary", params={"level": "grid"}), 422)
    assert body["errors"][0]["loc"] == ["query", "code"]
    body = check(TestClient(viewer.app).get("/api/auth/me"), 401)
    assert body["code"] == "not_authenticated" and body["error"] == "NotAuthenticated"


def test_extra_members_named_like_parameters():
    from gisgov.api.errors import error_content

    body = error_content(422, "导入被拒绝 rejected", "ImportRejected", extra={"status": "rejected"})
    assert body["status"] == "rejected" and body["details"] == {"status": "rejected"}
    assert body["code"] == "import_rejected"
    body = error_content(409, "冲突 conflict", "PlanConflict", extra={"detail": "x", "conflict": 1})
    assert body["detail"] == "冲突 conflict" and body["conflict"] == 1
