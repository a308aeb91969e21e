"""Answers of the leaders' read routes kept per worker (gisgov.api.answers): shared only by accounts of the
same role and area, never given after a committed write to what they show, never for personal layers."""

from __future__ import annotations

import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from sample_fixtures import small_city_db
from sqlalchemy import create_engine, pool, text

from gisgov.api.answers import HEADER
from gisgov.api.app import create_app
from gisgov.config import Settings


@pytest.fixture(scope="module")
def city(db_factory):
    url = small_city_db(db_factory, "gisgov_test_answers", compute=False, scale=0.2)
    eng = create_engine(url, poolclass=pool.NullPool)
    with eng.connect() as c:
        streets = c.execute(text("SELECT code FROM street ORDER BY code")).scalars().all()
        community = c.execute(text("SELECT code FROM community ORDER BY code LIMIT 1")).scalar_one()
    eng.dispose()
    return url, streets, community


@pytest.fixture(scope="module")
def client(city):
    url, streets, community = city
    users = {
        "leader_a": ensure_user(url, "street_leader", streets[0], "cache_leader_a"),
        "leader_a2": ensure_user(url, "street_leader", streets[0], "cache_leader_a2"),
        "leader_b": ensure_user(url, "street_leader", streets[1], "cache_leader_b"),
        "viewer_a": ensure_user(url, "viewer", streets[0], "cache_viewer_a"),
        "staff": ensure_user(url, "community_staff", community, "cache_staff"),
    }
    eng = app_engine(url)
    app = create_app(Settings(), engine=eng)
    with TestClient(app) as c:
        tokens = {k: {"Authorization": f"Bearer {bearer_token(c, u)}"} for k, u in users.items()}
        yield c, tokens
    eng.dispose()


def get(client, tokens, who, path):
    c, t = client, tokens
    r = c.get(path, headers=t[who])
    assert r.status_code == 200, r.text
    return r


def test_same_role_and_area_share_an_answer_other_areas_never_do(client, city):
    c, tokens = client
    _, streets, _ = city
    first = get(c, tokens, "leader_a", "/api/hierarchy")
    again = get(c, tokens, "leader_a2", "/api/hierarchy")  # another account, same role and street
    assert again.headers[HEADER] == "hit" and again.content == first.content
    other = get(c, tokens, "leader_b", "/api/hierarchy")
    assert other.headers[HEADER] == "miss"
    codes = {n["code"] for n in other.json()["streets"]}
    assert codes == {streets[1]}  # the other street's tree only, not the answer kept for the first
    viewer = get(c, tokens, "viewer_a", "/api/stats")  # same street, another role: suppressed, its own entry
    leader = get(c, tokens, "leader_a", "/api/stats")
    assert viewer.headers[HEADER] == "miss" and viewer.content != leader.content


def test_a_committed_write_to_what_an_answer_shows_is_seen_at_once(client, city):
    url, _, community = city
    c, tokens = client
    path = f"/api/stats/community/{community}"
    before = get(c, tokens, "leader_a", path)
    assert get(c, tokens, "leader_a", path).headers[HEADER] == "hit"
    owner = create_engine(url, poolclass=pool.NullPool)
    try:
        with owner.begin() as conn:  # the special-group vocabulary: counted only since migration 0019
            conn.execute(text("UPDATE special_group SET name_zh = name_zh || '（改）' WHERE code = 'tekun'"))
        after = get(c, tokens, "leader_a", path)
        assert after.headers[HEADER] == "miss"
        names = [g["name_zh"] for g in after.json()["labels"]["special_groups"]]
        assert any(str(n).endswith("（改）") for n in names), names
        assert after.json()["stats"] == before.json()["stats"]
    finally:
        with owner.begin() as conn:
            conn.execute(text("UPDATE special_group SET name_zh = replace(name_zh, '（改）', '')"))
        owner.dispose()


def test_personal_layers_are_read_and_audited_every_time(client, city):
    url, _, _ = city
    c, tokens = client
    owner = create_engine(url, poolclass=pool.NullPool)
    count = "SELECT count(*) FROM audit_log WHERE action = 'read_personal'"
    with owner.connect() as conn:
        n0 = conn.execute(text(count)).scalar_one()
    for _ in range(2):
        r = get(c, tokens, "staff", "/api/layers/resident?limit=5")
        assert HEADER not in r.headers
    with owner.connect() as conn:
        assert conn.execute(text(count)).scalar_one() == n0 + 2
    owner.dispose()


def test_the_map_page_is_shared_by_role_and_area_but_names_each_account(client):
    c, tokens = client
    a = get(c, tokens, "leader_a", "/map")
    b = get(c, tokens, "leader_a2", "/map")  # same role and street: one page kept, the header names each
    assert b.headers[HEADER] == "hit"
    assert "cache_leader_a2" in b.text and "cache_leader_a2" not in a.text
    assert "cache_leader_a" in a.text and "GISGOV-ACCOUNT" not in a.text + b.text
    other = get(c, tokens, "leader_b", "/map")  # another street: its own page
    assert other.headers[HEADER] == "miss" and "cache_leader_b" in other.text
