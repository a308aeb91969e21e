"""`gisgov user …`, `gisgov audit`, the demo accounts and the serve refusals, on a real database.

The commands run in-process (typer's CliRunner) with GISGOV_DATABASE_URL pointing at a fresh migrated
test database holding the mini city, exactly as an operator would run them against a server.
"""

from __future__ import annotations

import json

import pytest
from mini_city import COMM_A, GRID_A1, STREET, load_mini_city
from sqlalchemy import create_engine, pool, text
from typer.testing import CliRunner

from gisgov.cli.main import app
from gisgov.config import Settings, get_settings
from gisgov.security import accounts

PW = "Str0ng-passw0rd"
PW2 = "An0ther-passw0rd"


@pytest.fixture(scope="module")
def url(db_factory) -> str:
    u = db_factory.create()
    load_mini_city(u)
    return u


@pytest.fixture(scope="module")
def owner(url):
    eng = create_engine(url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def gisgov(url, monkeypatch):
    """Run `gisgov …` against the test database; returns the click Result."""
    monkeypatch.setenv("GISGOV_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    yield run
    get_settings.cache_clear()


def _user(owner, username):
    with owner.connect() as c:
        return c.execute(text("SELECT * FROM app_user WHERE username = :u"), {"u": username}).mappings().first()


def _audit_rows(owner, username, action="user_admin"):
    with owner.connect() as c:
        return (
            c.execute(
                text("SELECT * FROM audit_log WHERE action = :a AND object = :o ORDER BY id"),
                {"a": action, "o": f"user:{username}"},
            )
            .mappings()
            .all()
        )


def _sign_in(owner, username, password):
    with owner.begin() as c:
        return accounts.sign_in(c, Settings(), username, password, kind="bearer")


def test_add_with_password_on_stdin_is_audited_and_can_sign_in(gisgov, owner):
    r = gisgov(
        "user",
        "add",
        "zhang.san",
        "--role",
        "community_staff",
        "--scope",
        COMM_A,
        "--name",
        "张三",
        "--password-stdin",
        input=PW + "\n",
    )
    assert r.exit_code == 0, r.output
    assert "已创建 added" in r.stdout and "东园社区" in r.stdout
    assert PW not in r.output
    u = _user(owner, "zhang.san")
    assert (u["role"], u["scope_code"], u["display_name"], u["is_demo"]) == ("community_staff", COMM_A, "张三", False)
    assert u["password_hash"].startswith("$argon2") and PW not in u["password_hash"]
    rows = _audit_rows(owner, "zhang.san")
    assert len(rows) == 1
    assert rows[0]["actor"].startswith("cli:") and rows[0]["result"] == "ok"
    assert rows[0]["detail"] == {"op": "add", "role": "community_staff", "scope": COMM_A}
    assert PW not in json.dumps(rows[0]["detail"])
    assert _sign_in(owner, "zhang.san", PW).principal.scope_code == COMM_A


def test_add_prompts_twice_hidden(gisgov, owner):
    r = gisgov("user", "add", "root_admin", "--role", "admin", input=f"{PW}\n{PW}\n")
    assert r.exit_code == 0, r.output
    assert PW not in r.stdout  # hidden input is not echoed
    assert "New password" in r.stdout and "Repeat the new password" in r.stdout
    assert _user(owner, "root_admin")["role"] == "admin"
    mismatch = gisgov("user", "add", "other_admin", "--role", "admin", input=f"{PW}\nwrong-1234\n")
    assert mismatch.exit_code != 0 and _user(owner, "other_admin") is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--role", "mayor", "--scope", STREET], "未知角色 unknown role 'mayor'"),
        (["--role", "grid_worker", "--scope", STREET], "must be bound to: 网格 grid"),
        (["--role", "admin", "--scope", STREET], "must be bound to: 全市 whole city"),
        (["--role", "viewer", "--scope", "12ab"], "is not a street (9), community (12) or grid (15) code"),
        (["--role", "community_staff", "--scope", "340104001999"], "unknown community code 340104001999"),
        (["--role", "viewer", "--scope", STREET, "--name", "x"], "password must contain letters and digits"),
    ],
)
def test_add_bad_input_exits_2_with_one_line(gisgov, owner, args, message):
    pw = "onlyletters" if "x" in args else PW
    r = gisgov("user", "add", "bad_user", *args, "--password-stdin", input=pw + "\n")
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("错误 error:")
    assert "Traceback" not in r.output
    assert _user(owner, "bad_user") is None


def test_add_duplicate_and_bad_name(gisgov, owner):
    assert (
        gisgov(
            "user", "add", "dup_user", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n"
        ).exit_code
        == 0
    )
    again = gisgov(
        "user", "add", "dup_user", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n"
    )
    assert again.exit_code == 2 and "already exists" in again.stderr
    failed = [r for r in _audit_rows(owner, "dup_user") if r["result"] == "failed"]
    assert len(failed) == 1 and failed[0]["detail"]["op"] == "add"
    bad = gisgov("user", "add", "bad name!", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    assert bad.exit_code == 2 and "invalid user name" in bad.stderr


def test_list_shows_role_labels_scope_and_state(gisgov, owner):
    gisgov(
        "user",
        "add",
        "wang.grid",
        "--role",
        "grid_worker",
        "--scope",
        GRID_A1,
        "--name",
        "王网格",
        "--password-stdin",
        input=PW + "\n",
    )
    gisgov("user", "add", "li.locked", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    with owner.begin() as c:
        c.execute(text("UPDATE app_user SET locked_until = now() + interval '1 hour' WHERE username = 'li.locked'"))
    _sign_in(owner, "wang.grid", PW)
    r = gisgov("user", "list")
    assert r.exit_code == 0, r.output
    lines = {ln.split("│")[1].strip(): ln for ln in r.stdout.splitlines() if ln.count("│") >= 7}
    assert "wang.grid" in lines and "li.locked" in lines
    grid = lines["wang.grid"]
    assert "王网格" in grid and "grid_worker 网格员" in grid and GRID_A1 in grid and "东园一网格" in grid
    assert "否 no" in grid and "—" not in grid.split("│")[7]  # signed in: a last-login time
    assert "至 until" in lines["li.locked"]
    assert "$argon2" not in r.stdout
    with owner.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'user_admin' AND detail->>'op' = 'list'")
        ).scalar()
    assert n >= 1


def test_disable_then_sign_in_fails_and_enable_again(gisgov, owner):
    gisgov("user", "add", "zhao.off", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    _sign_in(owner, "zhao.off", PW)
    r = gisgov("user", "disable", "zhao.off")
    assert r.exit_code == 0 and "已停用 disabled" in r.stdout
    assert _user(owner, "zhao.off")["disabled"] is True
    with owner.connect() as c:  # its sessions ended
        assert (
            c.execute(
                text(
                    "SELECT count(*) FROM auth_session s JOIN app_user u ON u.id = s.user_id "
                    "WHERE u.username = 'zhao.off'"
                )
            ).scalar()
            == 0
        )
    with pytest.raises(accounts.SignInFailed) as exc:
        _sign_in(owner, "zhao.off", PW)
    assert exc.value.reason == "disabled"
    assert gisgov("user", "disable", "zhao.off", "--enable").exit_code == 0
    assert _sign_in(owner, "zhao.off", PW)
    ops = [(r["detail"]["op"], r["result"]) for r in _audit_rows(owner, "zhao.off")]
    assert ops == [("add", "ok"), ("disable", "ok"), ("enable", "ok")]


def test_unknown_user_exits_4(gisgov, owner):
    for args in (
        ["disable", "nobody"],
        ["passwd", "nobody", "--password-stdin"],
        ["role", "nobody", "--role", "viewer", "--scope", STREET],
    ):
        r = gisgov("user", *args, input=PW + "\n")
        assert r.exit_code == 4, (args, r.output)
        assert "no user nobody" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert {r["detail"]["op"] for r in _audit_rows(owner, "nobody")} == {"disable", "passwd", "role"}
    assert all(r["result"] == "failed" for r in _audit_rows(owner, "nobody"))


def test_passwd(gisgov, owner):
    gisgov("user", "add", "sun.pw", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    r = gisgov("user", "passwd", "sun.pw", "--password-stdin", input=PW2 + "\n")
    assert r.exit_code == 0 and "已修改密码 password changed" in r.stdout
    with pytest.raises(accounts.SignInFailed):
        _sign_in(owner, "sun.pw", PW)
    assert _sign_in(owner, "sun.pw", PW2)
    weak = gisgov("user", "passwd", "sun.pw", "--password-stdin", input="short1\n")
    assert weak.exit_code == 2 and "at least 8" in weak.stderr
    prompted = gisgov("user", "passwd", "sun.pw", input=f"{PW}\n{PW}\n")
    assert prompted.exit_code == 0 and PW not in prompted.stdout
    assert _sign_in(owner, "sun.pw", PW)
    assert [r["detail"]["op"] for r in _audit_rows(owner, "sun.pw") if r["result"] == "ok"] == [
        "add",
        "passwd",
        "passwd",
    ]


def test_role(gisgov, owner):
    gisgov("user", "add", "qian.role", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    token = _sign_in(owner, "qian.role", PW).token
    r = gisgov("user", "role", "qian.role", "--role", "grid_worker", "--scope", GRID_A1)
    assert r.exit_code == 0, r.output
    assert "网格员" in r.stdout
    u = _user(owner, "qian.role")
    assert (u["role"], u["scope_code"]) == ("grid_worker", GRID_A1)
    with owner.begin() as c:  # the old session (with the old role) ended
        assert accounts.resolve(c, Settings(), token, "bearer") is None
    bad = gisgov("user", "role", "qian.role", "--role", "street_leader", "--scope", "340104999")
    assert bad.exit_code == 2 and "unknown street code 340104999" in bad.stderr
    wrong = gisgov("user", "role", "qian.role", "--role", "street_leader", "--scope", COMM_A)
    assert wrong.exit_code == 2 and "must be bound to: 街道 street" in wrong.stderr
    assert (_user(owner, "qian.role")["role"]) == "grid_worker"
    last_ok = [r for r in _audit_rows(owner, "qian.role") if r["result"] == "ok"][-1]
    assert last_ok["detail"] == {
        "op": "role",
        "role": "grid_worker",
        "scope": GRID_A1,
        "was": {"role": "viewer", "scope": STREET},
    }


def test_audit_command_json_and_filters(gisgov, owner):
    gisgov("user", "add", "audit.me", "--role", "viewer", "--scope", STREET, "--password-stdin", input=PW + "\n")
    r = gisgov("audit", "--action", "user_admin", "--json", "--limit", "500")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows and all(x["action"] == "user_admin" for x in rows)
    mine = [x for x in rows if x["object"] == "user:audit.me"]
    assert len(mine) == 1 and mine[0]["actor"].startswith("cli:") and mine[0]["detail"]["op"] == "add"
    assert [x["at"] for x in rows] == sorted((x["at"] for x in rows), reverse=True)
    one = json.loads(gisgov("audit", "--json", "--limit", "1").stdout)
    assert len(one) == 1
    actor = mine[0]["actor"]
    by_actor = json.loads(gisgov("audit", "--json", "--actor", actor, "--result", "failed").stdout)
    assert by_actor and all(x["actor"] == actor and x["result"] == "failed" for x in by_actor)
    future = json.loads(gisgov("audit", "--json", "--since", "2999-01-01").stdout)
    assert future == []
    past = json.loads(gisgov("audit", "--json", "--until", "2000-01-01T00:00+08:00").stdout)
    assert past == []
    # each read is itself audited, after the query (so not in its own result)
    with owner.connect() as c:
        reads = c.execute(text("SELECT actor, detail FROM audit_log WHERE action = 'audit_read' ORDER BY id")).all()
    assert len(reads) == 5 and all(a.startswith("cli:") for a, _ in reads)
    assert reads[0][1]["action"] == "user_admin" and reads[0][1]["via"] == "cli"
    table = gisgov("audit", "--limit", "5")
    assert table.exit_code == 0 and "审计日志 Audit log" in table.stdout and "audit_read" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "yesterday"], "invalid time 'yesterday'"),
        (["--action", "dance"], "unknown action 'dance'"),
        (["--result", "meh"], "unknown result 'meh'"),
    ],
)
def test_audit_bad_filters_exit_2(gisgov, args, message):
    r = gisgov("audit", *args)
    assert r.exit_code == 2 and message in r.stderr


def test_demo_accounts_created_once_and_serve_refusals(gisgov, owner, url, monkeypatch, capsys):
    from gisgov.cli import demo, serve

    with owner.begin() as c:  # an active plan for community A, so the demo grid worker has a grid
        pid = c.execute(
            text(
                "INSERT INTO grid_plan (community_code, version, status, activated) "
                "VALUES (:c, 1, 'active', now()) RETURNING id"
            ),
            {"c": COMM_A},
        ).scalar()
        c.execute(text("UPDATE grid SET plan_id = :p WHERE community_code = :c"), {"p": pid, "c": COMM_A})
        c.execute(text("UPDATE app_user SET disabled = true WHERE role = 'admin'"))  # no admin yet
    problems = serve.account_problems(url)
    assert len(problems) == 1 and "gisgov user add" in problems[0]

    made = demo.ensure_demo_accounts(url)
    want = {
        "demo_admin": ("admin", ""),
        "demo_leader": ("street_leader", STREET),
        "demo_planner": ("planner", STREET),
        "demo_staff": ("community_staff", COMM_A),
        "demo_grid": ("grid_worker", GRID_A1),
        "demo_viewer": ("viewer", STREET),
    }
    assert {a.username: (a.role.value, a.scope_code) for a in made} == want
    for a in made:
        assert _user(owner, a.username)["is_demo"] is True
        assert _sign_in(owner, a.username, a.password).principal.role.value == want[a.username][0]
    again = demo.ensure_demo_accounts(url)
    assert [a.password for a in again] == [a.password for a in made]
    with owner.connect() as c:
        assert c.execute(text("SELECT count(*) FROM app_user WHERE is_demo")).scalar() == 6
        assert c.execute(text("SELECT count(*) FROM audit_log WHERE detail->>'op' = 'demo_accounts'")).scalar() == 1

    capsys.readouterr()
    demo.print_demo_accounts(again)
    printed = capsys.readouterr().out
    for a in made:
        assert a.username in printed and a.password in printed
    assert "管理员" in printed and "街道领导" in printed and "示范街道" in printed and "东园一网格" in printed

    problems = serve.account_problems(url)
    assert any("demo_admin" in p and "gisgov user passwd" in p and "gisgov user disable" in p for p in problems)
    monkeypatch.setattr(serve, "prepare", lambda: url)
    refused = gisgov("serve")
    assert refused.exit_code == 1 and "拒绝启动 refusing to serve" in refused.stdout

    # the operator follows the message: own password for the admin, the other demo accounts disabled
    assert gisgov("user", "passwd", "demo_admin", "--password-stdin", input=PW + "\n").exit_code == 0
    for name in want:
        if name != "demo_admin":
            assert gisgov("user", "disable", name).exit_code == 0
    assert serve.account_problems(url) == []
    shown = demo.ensure_demo_accounts(url)
    assert {a.username: a.password for a in shown}["demo_admin"] is None  # changed: no longer printed


def test_serve_and_demo_print_the_sign_in_url_and_set_demo_mode(gisgov, url, owner, monkeypatch):
    import uvicorn

    from gisgov.cli import demo, serve

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.append((app, host, port)))
    monkeypatch.setattr(serve, "prepare", lambda: url)
    monkeypatch.setattr(serve, "account_problems", lambda u: [])
    r = gisgov("serve", "--port", "8123")
    assert r.exit_code == 0, r.output
    assert "http://127.0.0.1:8123/login" in r.stdout and "登录 Sign in" in r.stdout
    assert served[-1][0].state.settings.demo is False and served[-1][1:] == ("127.0.0.1", 8123)

    monkeypatch.setattr(demo, "_analysis_steps", list)
    with owner.begin() as c:  # (an earlier test may have disabled it)
        c.execute(text("UPDATE app_user SET disabled = false WHERE username = 'demo_leader'"))
    r = gisgov("demo", "--port", "8124")
    assert r.exit_code == 0, r.output
    assert "演示账号 Demo accounts" in r.stdout and "Demo-leader-2024" in r.stdout and "街道领导" in r.stdout
    assert r.stdout.index("Demo-leader-2024") < r.stdout.index("http://127.0.0.1:8124/login")
    assert served[-1][0].state.settings.demo is True
