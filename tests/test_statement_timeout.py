"""statement_timeout per request class and cancellation when the client goes away (issue 9): a
statement past its request class's timeout answers 503 StatementTimeout and the pool stays healthy;
a statement still running when the client disconnects is cancelled in PostgreSQL.

Test-only routes (``/api/test/...``) are added to an app built here; they go through the same
sign-in gate and the same request transaction (``DB``) as every route."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from auth_helpers import app_engine, ensure_user
from budget_helpers import budget_client
from fastapi import Request
from sqlalchemy import Connection, create_engine, pool, text

from gisgov.api import budgets
from gisgov.api.app import create_app
from gisgov.api.deps import DB
from gisgov.config import Settings
from gisgov.db.cluster import free_port

SLEEP_TAG = "gisgov_budget_test_sleep"


def test_routes(app) -> None:
    @app.get("/api/test/timeout")
    def current_timeout(conn: Connection = DB) -> dict:
        return {"statement_timeout": conn.execute(text("SELECT current_setting('statement_timeout')")).scalar()}

    @app.get("/api/test/sleep")
    def sleep(seconds: float, conn: Connection = DB) -> dict:
        conn.execute(text(f"SELECT pg_sleep(:s) /* {SLEEP_TAG} */"), {"s": seconds})
        return {"slept": seconds}

    @app.post("/api/test/sleep")
    def sleep_post(body: dict, request: Request, conn: Connection = DB) -> dict:
        conn.execute(text(f"SELECT pg_sleep(:s) /* {SLEEP_TAG} */"), {"s": float(body["seconds"])})
        return {"slept": body["seconds"]}


test_routes.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def owner_url(db_url) -> str:
    return db_url


def test_statement_timeout_per_request_class(owner_url, monkeypatch):
    with budget_client(Settings(statement_timeout_s=7, analysis_timeout_s=300), owner_url, routes=test_routes) as c:
        r = c.get("/api/test/timeout")
        assert r.status_code == 200 and r.json()["statement_timeout"] == "7s"
        monkeypatch.setattr(budgets, "ANALYSIS_ROUTES", budgets.ANALYSIS_ROUTES | {("GET", "/api/test/timeout")})
        assert c.get("/api/test/timeout").json()["statement_timeout"] == "5min"
        monkeypatch.undo()
        # transaction-local: the next request on the same pooled connection starts from the class value again
        assert c.get("/api/test/timeout").json()["statement_timeout"] == "7s"


def test_a_statement_past_its_timeout_answers_503_and_the_pool_stays_healthy(owner_url):
    with budget_client(Settings(statement_timeout_s=0.5), owner_url, routes=test_routes, pool_size=2) as c:
        t0 = time.perf_counter()
        r = c.get("/api/test/sleep", params={"seconds": 20})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "StatementTimeout"
        assert body["detail"].startswith("查询超时") and "statement_timeout" in body["detail"]
        assert "GISGOV_STATEMENT_TIMEOUT_S" in body["detail"] and "0.5 s" in body["detail"]
        assert elapsed < 15  # cancelled by the server, not waited out (generous)
        # the pool is healthy: more requests than connections, each answered, all connections back
        for _ in range(6):
            r = c.get("/api/test/sleep", params={"seconds": 0.01})
            assert r.status_code == 200, r.text
        assert c.get("/health").status_code == 200
        eng = c.app.state.engine
        assert eng.pool.checkedout() == 0
        # a POST analysis-class request is refused the same way, naming its own setting
    with budget_client(Settings(analysis_timeout_s=0.5), owner_url, routes=test_routes) as c:
        saved = budgets.ANALYSIS_ROUTES
        budgets.ANALYSIS_ROUTES = saved | {("POST", "/api/test/sleep")}
        try:
            r = c.post("/api/test/sleep", json={"seconds": 20})
        finally:
            budgets.ANALYSIS_ROUTES = saved
        assert r.status_code == 503 and "GISGOV_ANALYSIS_TIMEOUT_S" in r.json()["detail"]
        assert c.get("/api/test/sleep", params={"seconds": 0.01}).status_code == 200


# -- client goes away ------------------------------------------------------------------------------


class LiveServer:
    def __init__(self, owner_url: str, settings: Settings):
        self.port = free_port()
        self.engine = app_engine(owner_url, pool_size=3, max_overflow=0)
        app = create_app(settings.model_copy(update={"host": "127.0.0.1", "port": self.port}), engine=self.engine)
        test_routes(app)
        budgets.install(app)
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.engine.dispose()

    def request(self, raw: bytes) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(raw)
        return s


def http_call(srv: LiveServer, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    s = srv.request(head.encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def sleeping(owner_url: str) -> int:
    eng = create_engine(owner_url, poolclass=pool.NullPool)
    try:
        with eng.connect() as c:
            return c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE '%pg_sleep%' AND query LIKE :tag AND pid <> pg_backend_pid()"
                ),
                {"tag": f"%{SLEEP_TAG}%"},
            ).scalar()
    finally:
        eng.dispose()


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


@pytest.fixture(scope="module")
def live(owner_url):
    with LiveServer(owner_url, Settings(statement_timeout_s=120)) as srv:
        import json as _json

        user = ensure_user(owner_url, "admin")
        status, body = http_call(
            srv,
            "POST",
            "/api/auth/token",
            {"Content-Type": "application/x-www-form-urlencoded"},
            f"username={user}&password=Test-passw0rd".encode(),
        )
        assert status == 200, body
        srv.token = _json.loads(body)["access_token"]
        yield srv


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_client_gone_cancels_its_running_statement(live, owner_url, method):
    """A client asks for 30 s of pg_sleep and hangs up after 1 s: within a few seconds PostgreSQL runs
    no such statement any more, and the server keeps answering (its connection back in the pool)."""
    assert sleeping(owner_url) == 0
    auth = f"Authorization: Bearer {live.token}\r\n"
    if method == "GET":
        raw = (f"GET /api/test/sleep?seconds=30 HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n{auth}\r\n").encode()
    else:
        body = b'{"seconds": 30}'
        raw = (
            f"POST /api/test/sleep HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    s = live.request(raw)
    try:
        assert wait_for(lambda: sleeping(owner_url) == 1, 10), "the statement never started"
        time.sleep(1)
        assert sleeping(owner_url) == 1
    finally:
        s.close()  # the client goes away
    t0 = time.monotonic()
    assert wait_for(lambda: sleeping(owner_url) == 0, 5), "the statement kept running after the client left"
    assert time.monotonic() - t0 < 5
    assert wait_for(lambda: live.engine.pool.checkedout() == 0, 5)
    status, body = http_call(live, "GET", "/api/test/sleep?seconds=0.01", {"Authorization": f"Bearer {live.token}"})
    assert status == 200, body


def test_a_finished_request_is_not_cancelled_and_later_requests_are_untouched(live, owner_url):
    """Requests that complete normally (and the requests reusing their connections) are never hit by
    a cancel: 20 short sleeps in a row all answer 200."""
    for _ in range(20):
        status, body = http_call(live, "GET", "/api/test/sleep?seconds=0.02", {"Authorization": f"Bearer {live.token}"})
        assert status == 200, body


def test_declared_oversize_upload_is_refused_before_the_body_is_sent(live):
    """A 1 GB upload announced with Content-Length (and Expect: 100-continue) is refused at once:
    the client never has to send a byte of it."""
    s = live.request(
        (
            f"POST /api/import HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            f"Authorization: Bearer {live.token}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            "Expect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n"
        ).encode()
    )
    s.settimeout(10)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
            if b"}" in data:
                break
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert b"PayloadTooLarge" in data and b"GISGOV_INGEST_MAX_UPLOAD_MB" in data


def test_chunked_upload_over_http_is_cut_off_near_the_limit(live, monkeypatch):
    """Over real HTTP: a chunked multipart upload offering 1 GB (no Content-Length) gets its 413 once
    about GISGOV_INGEST_MAX_UPLOAD_MB (2 MB here) has arrived; the client stops sending when the answer
    comes, having sent a small fraction of what it offered (socket buffers hold a few MB more)."""
    import select

    from gisgov.ingest.settings import get_ingest_settings

    monkeypatch.setenv("GISGOV_INGEST_MAX_UPLOAD_MB", "2")
    get_ingest_settings.cache_clear()
    offered = 1024 * 1_000_000
    try:
        head = (
            b'--xx\r\nContent-Disposition: form-data; name="level"\r\n\r\nbuilding\r\n--xx\r\n'
            b'Content-Disposition: form-data; name="file"; filename="big.geojson"\r\n\r\n'
        )
        s = live.request(
            (
                f"POST /api/import HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
                f"Authorization: Bearer {live.token}\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + b"%x\r\n%s\r\n" % (len(head), head)
        )
        s.setblocking(False)
        frame = b"10000\r\n" + b"0" * 0x10000 + b"\r\n"
        pending, sent, answer = b"", 0, b""
        deadline = time.monotonic() + 60
        while sent < offered and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s] if sent < offered else [], [], 5)
            if readable:
                break
            if writable:
                if not pending:
                    pending = frame
                try:
                    n = s.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                pending, sent = pending[n:], sent + n
        s.setblocking(True)
        s.settimeout(10)
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"}" in answer:
                    break
        except ConnectionResetError:
            pass
        s.close()
    finally:
        get_ingest_settings.cache_clear()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"PayloadTooLarge" in answer and b"GISGOV_INGEST_MAX_UPLOAD_MB" in answer
    assert 2_000_000 < sent < 64_000_000, sent  # ~2 MB read by the server, the rest still in socket buffers
