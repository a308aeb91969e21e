"""Row-level security, the app role and the audit log, checked in the database itself (direct SQL on
the sample city with grid plans and staff in three communities, no HTTP): what the app role sees under each scope, what it may write, what the
catalog says about the personal-data tables and the role, and that the audit log is append-only.

Expected rows are computed as the owner (who sees everything) with plain joins, independently of the
policy functions of migration 0005.
"""

from __future__ import annotations

import psycopg.errors
import pytest
from auth_helpers import APP_ROLE, app_engine
from security_city import gridded_city_url  # noqa: F401  (fixture)
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

PERSONAL_TABLES = ("household", "resident", "resident_group", "grid_staff")

# One query per personal-data table: the rows' keys as the caller sees them.
KEYS = {
    "household": "SELECT id FROM household",
    "resident": "SELECT id FROM resident",
    "resident_group": "SELECT resident_id || ':' || group_code FROM resident_group",
    "grid_staff": "SELECT id FROM grid_staff",
}

# The same keys as the owner sees them, with the hierarchy code the row belongs to (building's
# community; grid code for staff), for filtering by prefix.
OWNER_KEYS = {
    "household": "SELECT h.id, b.community_code AS code FROM household h JOIN building b ON b.code = h.building_code",
    "resident": """SELECT r.id, b.community_code AS code FROM resident r
                   JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code""",
    "resident_group": """SELECT rg.resident_id || ':' || rg.group_code AS id, b.community_code AS code
                         FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
                         JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code""",
    "grid_staff": "SELECT s.id, g.code AS code FROM grid_staff s JOIN grid g ON g.id = s.grid_id",
}


@pytest.fixture(scope="module")
def owner(gridded_city_url):
    eng = create_engine(gridded_city_url, poolclass=pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def app(gridded_city_url):
    eng = app_engine(gridded_city_url, pool_size=2, max_overflow=0)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def owned_rows(owner) -> dict[str, dict[str, str]]:
    """table -> {key: hierarchy code} for every row (owner's view)."""
    with owner.connect() as c:
        return {t: {str(k): code for k, code in c.execute(text(sql))} for t, sql in OWNER_KEYS.items()}


@pytest.fixture(scope="module")
def nodes(owner) -> dict:
    """Community A (with residents, special groups and staff) of street S, another street T, and an
    active grid G of A with residents."""
    with owner.connect() as c:
        a = c.execute(
            text("""
            SELECT b.community_code FROM resident_group rg JOIN resident r ON r.id = rg.resident_id
            JOIN household h ON h.id = r.household_id JOIN building b ON b.code = h.building_code
            WHERE EXISTS (SELECT 1 FROM grid_staff s JOIN grid g ON g.id = s.grid_id
                          WHERE g.community_code = b.community_code)
            GROUP BY 1 ORDER BY 1 LIMIT 1""")
        ).scalar_one()
        t = c.execute(
            text("""
            SELECT left(b.community_code, 9) FROM household h JOIN building b ON b.code = h.building_code
            WHERE left(b.community_code, 9) <> :s GROUP BY 1 ORDER BY 1 LIMIT 1"""),
            {"s": a[:9]},
        ).scalar_one()
        g = c.execute(
            text("""
            SELECT g.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
            JOIN grid_assignment ga ON ga.grid_id = g.id AND ga.plan_id = p.id
            JOIN building b ON b.id = ga.building_id JOIN household h ON h.building_code = b.code
            WHERE g.community_code = :a GROUP BY g.code ORDER BY count(*) DESC, g.code LIMIT 1"""),
            {"a": a},
        ).scalar_one()
        grid_buildings = set(
            c.execute(
                text("""
            SELECT b.code FROM grid g JOIN grid_plan p ON p.id = g.plan_id AND p.status = 'active'
            JOIN grid_assignment ga ON ga.grid_id = g.id AND ga.plan_id = p.id JOIN building b ON b.id = ga.building_id
            WHERE g.code = :g"""),
                {"g": g},
            ).scalars()
        )
        grid_residents = {
            str(i)
            for i in c.execute(
                text("""
            SELECT r.id FROM resident r JOIN household h ON h.id = r.household_id
            WHERE h.building_code = ANY(:b)"""),
                {"b": list(grid_buildings)},
            ).scalars()
        }
    return {"community": a, "street": a[:9], "other_street": t, "grid": g, "grid_residents": grid_residents}


def seen(app, sql: str, scope: str | None) -> set[str]:
    """Keys the app role sees with ``gisgov.scope`` set (None: not set at all) in one transaction."""
    with app.connect() as c, c.begin():
        if scope is not None:
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": scope})
        return {str(k) for k in c.execute(text(sql)).scalars()}


def expected(owned_rows, table: str, prefix: str) -> set[str]:
    return {k for k, code in owned_rows[table].items() if code.startswith(prefix)}


# ---- reads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", PERSONAL_TABLES)
def test_community_scope_sees_exactly_its_rows(app, owned_rows, nodes, table):
    want = expected(owned_rows, table, nodes["community"])
    assert want, f"sample city has no {table} rows in community {nodes['community']}"
    got = seen(app, KEYS[table], nodes["community"])
    assert got == want, f"{table}: {len(got - want)} foreign rows, {len(want - got)} own rows missing"
    assert len(got) < len(owned_rows[table])  # the scope really restricts


@pytest.mark.parametrize("table", PERSONAL_TABLES)
def test_street_scope_sees_its_rows_and_none_of_another_street(app, owned_rows, nodes, table):
    got = seen(app, KEYS[table], nodes["other_street"])
    assert got == expected(owned_rows, table, nodes["other_street"])
    assert not got & expected(owned_rows, table, nodes["street"]), f"{table}: rows of another street visible"
    assert not got & expected(owned_rows, table, nodes["community"])


@pytest.mark.parametrize("table", PERSONAL_TABLES)
@pytest.mark.parametrize("scope", [None, "", " ", "0", "nonsense", "%", "_________"])
def test_no_or_meaningless_scope_sees_nothing(app, owned_rows, table, scope):
    assert owned_rows[table], f"sample city has no {table} rows"
    assert seen(app, KEYS[table], scope) == set()


def test_star_scope_sees_everything(app, owned_rows):
    for table in PERSONAL_TABLES:
        assert seen(app, KEYS[table], "*") == set(owned_rows[table]), table


def test_grid_scope_sees_only_residents_of_the_active_grid(app, owned_rows, nodes):
    got = seen(app, KEYS["resident"], nodes["grid"])
    assert nodes["grid_residents"], "grid without residents"
    assert got == nodes["grid_residents"]
    community = expected(owned_rows, "resident", nodes["community"])
    assert got < community  # a grid is a strict part of its community
    staff = seen(app, KEYS["grid_staff"], nodes["grid"])
    assert staff <= expected(owned_rows, "grid_staff", nodes["grid"])


def test_two_scopes_are_the_union(app, owned_rows, nodes):
    got = seen(app, KEYS["household"], f"{nodes['community']},{nodes['other_street']}")
    assert got == expected(owned_rows, "household", nodes["community"]) | expected(
        owned_rows, "household", nodes["other_street"]
    )


def test_scope_does_not_outlive_its_transaction(gridded_city_url, owned_rows):
    """set_config(..., true) is transaction-local: the pooled connection's next transaction sees nothing."""
    eng = app_engine(gridded_city_url, pool_size=1, max_overflow=0)
    try:
        with eng.connect() as c:
            with c.begin():
                c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
                assert c.execute(text("SELECT count(*) FROM resident")).scalar() == len(owned_rows["resident"])
            with c.begin():
                assert c.execute(text("SELECT count(*) FROM resident")).scalar() == 0
        with eng.connect() as c, c.begin():  # the same pooled connection, checked out again
            assert c.execute(text("SELECT count(*) FROM household")).scalar() == 0
    finally:
        eng.dispose()


def test_aggregates_follow_scope(app, owned_rows, nodes):
    """Counts through joins (what dashboards do) see only the scope's rows too."""
    with app.connect() as c, c.begin():
        c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": nodes["community"]})
        n = c.execute(
            text("""SELECT count(*) FROM resident r JOIN household h ON h.id = r.household_id
                              JOIN building b ON b.code = h.building_code""")
        ).scalar()
        foreign = c.execute(
            text("""SELECT count(*) FROM resident r JOIN household h ON h.id = r.household_id
                                    JOIN building b ON b.code = h.building_code
                                    WHERE b.community_code <> :a"""),
            {"a": nodes["community"]},
        ).scalar()
    assert n == len(expected(owned_rows, "resident", nodes["community"])) and foreign == 0


# ---- writes (WITH CHECK) ---------------------------------------------------------------------------


def _building(owner, prefix: str) -> str:
    with owner.connect() as c:
        return c.execute(
            text("SELECT code FROM building WHERE community_code LIKE :p || '%' ORDER BY code LIMIT 1"), {"p": prefix}
        ).scalar_one()


def _free_household_code(owner, building: str) -> str:
    with owner.connect() as c:
        for n in range(9999, 0, -1):
            code = f"{building}{n:04d}"
            if c.execute(text("SELECT 1 FROM household WHERE code = :c"), {"c": code}).first() is None:
                return code
    raise AssertionError("no free household code")


def _insert_household(app, scope: str, building: str, code: str) -> None:
    with app.connect() as c:
        tx = c.begin()
        try:
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": scope})
            c.execute(text("INSERT INTO household (code, building_code) VALUES (:c, :b)"), {"c": code, "b": building})
        finally:
            tx.rollback()


def _is_rls_refusal(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, psycopg.errors.InsufficientPrivilege) and "row-level security" in str(exc.orig)


def test_insert_into_out_of_scope_building_is_refused(app, owner, nodes):
    outside = _building(owner, nodes["other_street"])
    with pytest.raises(DBAPIError) as err:
        _insert_household(app, nodes["community"], outside, _free_household_code(owner, outside))
    assert _is_rls_refusal(err.value), err.value
    with pytest.raises(DBAPIError) as err:  # no scope at all
        _insert_household(app, "", outside, _free_household_code(owner, outside))
    assert _is_rls_refusal(err.value), err.value
    # control: the same insert inside the scope is allowed (rolled back)
    inside = _building(owner, nodes["community"])
    _insert_household(app, nodes["community"], inside, _free_household_code(owner, inside))


def test_moving_a_household_out_of_scope_is_refused(app, owner, nodes):
    outside = _building(owner, nodes["other_street"])
    with app.connect() as c:
        tx = c.begin()
        try:
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": nodes["community"]})
            hid = c.execute(text("SELECT id FROM household ORDER BY id LIMIT 1")).scalar_one()
            with pytest.raises(DBAPIError) as err:
                c.execute(
                    text("UPDATE household SET building_code = :b, code = :b || right(code, 4) WHERE id = :i"),
                    {"b": outside, "i": hid},
                )
            assert _is_rls_refusal(err.value), err.value
        finally:
            tx.rollback()


def test_out_of_scope_rows_cannot_be_changed_or_deleted(app, owned_rows, nodes):
    """UPDATE/DELETE of foreign rows silently touch nothing (the rows are invisible)."""
    foreign = sorted(int(k) for k in expected(owned_rows, "resident", nodes["other_street"]))[:50]
    with app.connect() as c:
        tx = c.begin()
        try:
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": nodes["community"]})
            assert c.execute(text("UPDATE resident SET name = 'x' WHERE id = ANY(:i)"), {"i": foreign}).rowcount == 0
            assert c.execute(text("DELETE FROM resident WHERE id = ANY(:i)"), {"i": foreign}).rowcount == 0
        finally:
            tx.rollback()


def test_resident_into_out_of_scope_household_is_refused(app, owned_rows, nodes):
    with app.connect() as c:
        tx = c.begin()
        try:
            c.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
            hid = c.execute(
                text("""SELECT h.id FROM household h JOIN building b ON b.code = h.building_code
                                     WHERE b.community_code LIKE :t || '%' ORDER BY h.id LIMIT 1"""),
                {"t": nodes["other_street"]},
            ).scalar_one()
            c.execute(text("SELECT set_config('gisgov.scope', :s, true)"), {"s": nodes["community"]})
            with pytest.raises(DBAPIError) as err:
                c.execute(text("INSERT INTO resident (household_id, name) VALUES (:h, '测试')"), {"h": hid})
            assert _is_rls_refusal(err.value), err.value
        finally:
            tx.rollback()


# ---- catalog: the personal-data tables and the app role -------------------------------------------

PERSONAL_COLUMN = r"^(id_(cipher|hash|last4|number|no|card)|phone(_(cipher|masked|number))?|mobile|person_name|resident_name|sfzh|idcard)$"


def test_every_personal_data_table_forces_rls(owner):
    with owner.connect() as c:
        flagged = set(
            c.execute(
                text("""
            SELECT DISTINCT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
              AND NOT a.attisdropped AND (a.attname ~ :pat OR a.attname IN ('resident_id', 'household_id'))
        """),
                {"pat": PERSONAL_COLUMN},
            ).scalars()
        )
        tables = sorted(flagged | set(PERSONAL_TABLES))
        rows = c.execute(
            text("""
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
            FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(:t)"""),
            {"t": tables},
        ).all()
    assert {"resident", "grid_staff"} <= flagged  # the column rule finds the known tables
    found = {r.relname: r for r in rows}
    assert set(found) == set(tables), f"missing tables: {set(tables) - set(found)}"
    bad = [
        f"{r.relname} (rls={r.relrowsecurity}, force={r.relforcerowsecurity}, policies={r.policies})"
        for r in rows
        if not (r.relrowsecurity and r.relforcerowsecurity and r.policies > 0)
    ]
    assert not bad, f"personal-data tables without ENABLE+FORCE row-level security and a policy: {bad}"


def test_the_app_role_cannot_bypass_rls(owner, app):
    with owner.connect() as c:
        r = c.execute(
            text("""SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication, oid
                              FROM pg_roles WHERE rolname = :r"""),
            {"r": APP_ROLE},
        ).one()
        assert not (r.rolsuper or r.rolbypassrls or r.rolcreaterole or r.rolcreatedb or r.rolreplication), r
        owned = c.execute(text("SELECT count(*) FROM pg_class WHERE relowner = :o"), {"o": r.oid}).scalar()
        assert owned == 0, f"the app role owns {owned} relations (owners bypass non-forced RLS)"
        schemas = c.execute(text("SELECT count(*) FROM pg_namespace WHERE nspowner = :o"), {"o": r.oid}).scalar()
        assert schemas == 0
        # member of no role that could bypass RLS or owns the tables
        inherited = (
            c.execute(
                text("""
            SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
            WHERE m.member = :o AND (g.rolsuper OR g.rolbypassrls
                  OR EXISTS (SELECT 1 FROM pg_class k WHERE k.relowner = g.oid))"""),
                {"o": r.oid},
            )
            .scalars()
            .all()
        )
        assert inherited == []
    with app.connect() as c:
        me = c.execute(
            text("""SELECT current_user, has_schema_privilege('public', 'CREATE') AS can_create,
                                      current_setting('is_superuser') AS su""")
        ).one()
    assert me.current_user == APP_ROLE and me.su == "off"
    assert not me.can_create, "the app role may create objects in schema public (and would own them)"


def test_the_app_role_cannot_switch_rls_off(app):
    for stmt in (
        "ALTER TABLE resident DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE resident NO FORCE ROW LEVEL SECURITY",
        "SET row_security = off",
        "DROP POLICY resident_scope ON resident",
    ):
        with app.connect() as c:
            tx = c.begin()
            try:
                if stmt.startswith("SET"):
                    # row_security=off makes a query that RLS would filter FAIL rather than bypass
                    c.execute(text(stmt))
                    with pytest.raises(DBAPIError) as err:
                        c.execute(text("SELECT count(*) FROM resident"))
                    assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege), err.value
                else:
                    with pytest.raises(DBAPIError) as err:
                        c.execute(text(stmt))
                    assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege), err.value
            finally:
                tx.rollback()


def test_the_app_role_cannot_change_the_schema_revision(app):
    with app.connect() as c:
        tx = c.begin()
        try:
            with pytest.raises(DBAPIError) as err:
                c.execute(text("UPDATE alembic_version SET version_num = version_num"))
            assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege), err.value
        finally:
            tx.rollback()


def test_tables_of_later_migrations_are_granted_to_the_app_role(owner):
    with owner.connect() as c:
        acl = c.execute(text("SELECT defaclacl::text FROM pg_default_acl WHERE defaclobjtype = 'r'")).scalars().all()
    assert any("gisgov_app=arwd/" in a for a in acl), acl


# ---- audit log --------------------------------------------------------------------------------------


def _denied(conn, sql: str, params: dict | None = None) -> DBAPIError:
    with pytest.raises(DBAPIError) as err:
        conn.execute(text(sql), params or {})
    assert isinstance(err.value.orig, psycopg.errors.InsufficientPrivilege), err.value
    return err.value


def test_app_role_appends_but_never_changes_the_audit_log(app):
    with app.connect() as c:
        tx = c.begin()
        try:
            aid = c.execute(
                text("INSERT INTO audit_log (actor, action, result) VALUES ('t_audit', 'login', 'ok') RETURNING id")
            ).scalar_one()
            assert c.execute(text("SELECT actor FROM audit_log WHERE id = :i"), {"i": aid}).scalar() == "t_audit"
        finally:
            tx.rollback()
    for sql in (
        "UPDATE audit_log SET result = 'ok' WHERE id = (SELECT max(id) FROM audit_log)",
        "UPDATE audit_log SET actor = NULL",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE at < now() - interval '1000 days'",
        "TRUNCATE audit_log",
        "SELECT gisgov_audit_purge(365)",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
        "DROP TRIGGER audit_log_append_only ON audit_log",
    ):
        with app.connect() as c:
            tx = c.begin()
            try:
                err = _denied(c, sql)
                assert "permission denied" in str(err.orig) or "must be owner" in str(err.orig), (sql, err)
            finally:
                tx.rollback()


def test_even_the_owner_cannot_change_audit_rows(owner):
    for sql in (
        "UPDATE audit_log SET result = 'denied' WHERE id = :i",
        "DELETE FROM audit_log WHERE id = :i",
        "TRUNCATE audit_log",
    ):
        with owner.connect() as c:
            tx = c.begin()
            try:
                aid = c.execute(
                    text(
                        "INSERT INTO audit_log (actor, action, result, at) "
                        "VALUES ('t_owner', 'login', 'ok', now() - interval '1 year') RETURNING id"
                    )
                ).scalar_one()
                err = _denied(c, sql, {"i": aid})
                assert "append-only" in str(err.orig), err
            finally:
                tx.rollback()


def test_audit_purge_keeps_at_least_180_days(owner):
    with owner.connect() as c:
        tx = c.begin()
        try:
            with pytest.raises(DBAPIError) as err:
                c.execute(text("SELECT gisgov_audit_purge(30)"))
            assert "180" in str(err.value.orig)
        finally:
            tx.rollback()
    with owner.connect() as c:
        tx = c.begin()
        try:
            old = c.execute(
                text(
                    "INSERT INTO audit_log (actor, action, result, at) VALUES "
                    "('t_purge', 'login', 'ok', now() - interval '400 days') RETURNING id"
                )
            ).scalar_one()
            recent = c.execute(
                text(
                    "INSERT INTO audit_log (actor, action, result, at) VALUES "
                    "('t_purge', 'login', 'ok', now() - interval '100 days') RETURNING id"
                )
            ).scalar_one()
            assert c.execute(text("SELECT gisgov_audit_purge(180)")).scalar() >= 1
            left = set(
                c.execute(text("SELECT id FROM audit_log WHERE id IN (:a, :b)"), {"a": old, "b": recent}).scalars()
            )
            assert left == {recent}
            # the purge switch does not outlive the function: a plain DELETE is refused again
            err = _denied(c, "DELETE FROM audit_log WHERE id = :i", {"i": recent})
            assert "append-only" in str(err.orig)
        finally:
            tx.rollback()
