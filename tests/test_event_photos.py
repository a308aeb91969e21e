"""Event photos: checked by their bytes, re-encoded without metadata (the phone's GPS position and
device never stored or served), private files, scope and role rules, audit, append-only rows."""

from __future__ import annotations

import io
import stat

import pytest
from auth_helpers import app_engine, bearer_token, ensure_user
from fastapi.testclient import TestClient
from mini_city import COMM_A, GRID_A1, GRID_A2, STREET, load_mini_city
from PIL import Image
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from gisgov.api.app import create_app
from gisgov.config import Settings
from gisgov.events.photos import PhotoRejected, clean_photo

IN_A1 = (117.205, 31.815)
GPS_IFD = 0x8825


def jpeg_with_gps(size=(640, 480), orientation: int | None = None) -> bytes:
    im = Image.new("RGB", size, (200, 30, 30))
    im.paste((20, 20, 200), (0, 0, size[0] // 4, size[1] // 4))  # a blue corner, to see rotation
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x013B] = "张三"  # Artist: a person's name
    exif[GPS_IFD] = {1: "N", 2: (31.0, 48.0, 54.0), 3: "E", 4: (117.0, 12.0, 18.0)}
    if orientation:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def no_metadata(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        return len(im.getexif()) == 0 and b"PhoneMaker" not in data and "张三".encode() not in data


# --- the pure checks ------------------------------------------------------------------------------


def test_metadata_is_dropped_and_the_photo_turned_upright():
    raw = jpeg_with_gps(orientation=6)  # "rotate 90° clockwise to view"
    with Image.open(io.BytesIO(raw)) as im:
        assert im.getexif()[GPS_IFD] and im.size == (640, 480)
    out = clean_photo(raw, "a.jpg", max_bytes=3_000_000)
    assert out.media_type == "image/jpeg" and (out.width, out.height) == (480, 640)
    assert no_metadata(out.data)


@pytest.mark.parametrize(
    ("data", "rule", "status"),
    [
        (b"", "photo_empty", 422),
        (b"<html>not a photo</html>", "photo_type", 422),
        (b"%PDF-1.4 ...", "photo_type", 422),
        (jpeg_with_gps()[:300], "photo_unreadable", 422),
    ],
)
def test_bad_files_are_refused_with_the_rule(data, rule, status):
    with pytest.raises(PhotoRejected) as e:
        clean_photo(data, "x.jpg", max_bytes=3_000_000)
    assert f"rule: {rule}" in str(e.value) and "x.jpg" in str(e.value) and e.value.status_code == status


def test_size_and_pixel_limits():
    with pytest.raises(PhotoRejected) as e:
        clean_photo(jpeg_with_gps(), "big.jpg", max_bytes=1000)
    assert e.value.status_code == 413 and "photo_too_large" in str(e.value)
    buf = io.BytesIO()
    Image.new("L", (8000, 6000)).save(buf, "PNG")  # 48 Mpx, a few kB compressed: refused before decoding
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(PhotoRejected) as e:
        clean_photo(buf.getvalue(), "bomb.png", max_bytes=3_000_000)
    assert "photo_pixels" in str(e.value)


def test_large_photos_are_scaled_down_png_kept_png():
    buf = io.BytesIO()
    Image.new("RGBA", (3000, 1000), (0, 128, 0, 255)).save(buf, "PNG")
    out = clean_photo(buf.getvalue(), "wide.png", max_bytes=3_000_000)
    assert out.media_type == "image/png" and (out.width, out.height) == (2048, 683)


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city(db_factory):
    url = db_factory.create(prefix="gisgov_test_photos")
    load_mini_city(url)
    return url


@pytest.fixture(scope="module")
def world(city, tmp_path_factory):
    home = tmp_path_factory.mktemp("photo-home")
    eng = app_engine(city)
    app = create_app(Settings(home=home), engine=eng)
    users = {
        "gw": ensure_user(city, "grid_worker", GRID_A1),
        "gw2": ensure_user(city, "grid_worker", GRID_A2),
        "viewer": ensure_user(city, "viewer", STREET),
        "planner": ensure_user(city, "planner", STREET),
        "staff": ensure_user(city, "community_staff", COMM_A),
    }
    with TestClient(app) as base:
        clients = {}
        for k, u in users.items():
            c = TestClient(app)
            c.headers["Authorization"] = f"Bearer {bearer_token(base, u)}"
            clients[k] = c
        yield clients, home, users
    eng.dispose()


def _event(c) -> int:
    r = c.post(
        "/api/events",
        json={"lon": IN_A1[0], "lat": IN_A1[1], "category": "shirong", "description": "路灯损坏 a broken street lamp"},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_attach_list_fetch_and_rules(world, city):
    c, home, _users = world
    ev = _event(c["gw"])
    raw = jpeg_with_gps()
    r = c["gw"].post(f"/api/events/{ev}/photos", files={"file": ("IMG_0001.jpg", raw, "image/jpeg")})
    assert r.status_code == 201, r.text
    ph = r.json()
    assert ph["duplicate"] is False and ph["media_type"] == "image/jpeg" and ph["event"] == ev
    files = list((home / "event-photos" / str(ev)).iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "event-photos" / str(ev)).stat().st_mode) == 0o700
    assert no_metadata(files[0].read_bytes())

    # the same photo again is stored once
    again = c["gw"].post(f"/api/events/{ev}/photos", files={"file": ("copy.jpg", raw, "image/jpeg")})
    assert again.status_code == 201 and again.json()["duplicate"] is True and again.json()["id"] == ph["id"]

    listed = c["staff"].get(f"/api/events/{ev}/photos")
    assert listed.status_code == 200 and [p["id"] for p in listed.json()] == [ph["id"]]
    img = c["staff"].get(ph["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.headers["cache-control"] == "private, no-store" and no_metadata(img.content)
    assert img.content == files[0].read_bytes()

    # roles and scope: aggregate-only roles may not see or add photos; another grid's worker finds nothing
    for who in ("viewer", "planner"):
        assert c[who].get(f"/api/events/{ev}/photos").status_code == 403
        assert c[who].get(ph["url"]).status_code == 403
    assert (
        c["planner"].post(f"/api/events/{ev}/photos", files={"file": ("p.jpg", raw, "image/jpeg")}).status_code == 403
    )
    assert c["gw2"].get(f"/api/events/{ev}/photos").status_code == 404
    assert c["gw2"].get(ph["url"]).status_code == 404
    assert c["gw2"].post(f"/api/events/{ev}/photos", files={"file": ("p.jpg", raw, "image/jpeg")}).status_code == 404

    # a text file named .jpg: refused with the rule, nothing stored
    bad = c["gw"].post(
        f"/api/events/{ev}/photos", files={"file": ("fake.jpg", b"MZ\x90\x00 not an image", "image/jpeg")}
    )
    assert bad.status_code == 422 and "photo_type" in bad.json()["detail"] and bad.json()["error"]
    assert len(list((home / "event-photos" / str(ev)).iterdir())) == 1

    owner = create_engine(city, poolclass=pool.NullPool)
    try:
        with owner.connect() as conn:
            acts = (
                conn.execute(
                    text("SELECT result FROM audit_log WHERE action = 'event_photo' AND object = :o ORDER BY id"),
                    {"o": f"event:{ev}"},
                )
                .scalars()
                .all()
            )
        assert acts == ["ok", "failed"]
    finally:
        owner.dispose()


def test_photo_count_limit_and_rows_are_append_only(world, city):
    c, _home, _users = world
    ev = _event(c["gw"])
    settings_max = 6
    for i in range(settings_max):
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (i * 30, 0, 0)).save(buf, "PNG")
        assert (
            c["gw"]
            .post(f"/api/events/{ev}/photos", files={"file": (f"{i}.png", buf.getvalue(), "image/png")})
            .status_code
            == 201
        )
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 255, 0)).save(buf, "PNG")
    r = c["gw"].post(f"/api/events/{ev}/photos", files={"file": ("7.png", buf.getvalue(), "image/png")})
    assert r.status_code == 422 and "photo_count" in r.json()["detail"]
    eng = app_engine(city)
    try:
        with eng.connect() as conn, conn.begin():
            conn.execute(text("SELECT set_config('gisgov.scope', '*', true)"))
            with pytest.raises(DBAPIError):
                conn.execute(text("DELETE FROM event_photo WHERE event_id = :e"), {"e": ev})
    finally:
        eng.dispose()
