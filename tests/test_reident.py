"""Re-identification: how many ID numbers fit what a resident export reveals (must stay >= 1000)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from ingest_helpers import COMM_A, gdf, load_city
from shapely.geometry import box
from sqlalchemy import create_engine, pool

from gisgov.ingest.export import export_level
from gisgov.ingest.loader import load_file
from gisgov.ingest.roster import load_roster
from gisgov.security.pii import Vault, id_check_digit, is_valid_id, mask_id
from gisgov.security.reident import MIN_CANDIDATES, id_candidates, revealed_tail

VAULT = Vault(b"q" * 32)
REGION = "340104"


def make_id(birth: str, seq: int) -> str:
    first = f"{REGION}{birth}{seq:03d}"
    return first + id_check_digit(first)


def brute_force(region: str, dates: list[str], visible: str = "", gender: str | None = None) -> int:
    n = 0
    for d in dates:
        for s in range(1000):
            if gender is not None and s % 2 != (1 if gender == "男" else 0):
                continue
            v = f"{region}{d}{s:03d}"
            v += id_check_digit(v)
            if is_valid_id(v) and v.endswith(visible):
                n += 1
    return n


@pytest.mark.parametrize(
    "visible, gender",
    [("", None), ("X", None), ("2X", None), ("02X", "女"), ("002X", None), ("1002X", "男"), ("31002X", None)],
)
def test_count_matches_brute_force(visible, gender):
    d = ["19491231", "19491230", "19500101"]
    exact = sum(
        id_candidates("110105", birth_date=date(int(x[:4]), int(x[4:6]), int(x[6:])), visible=visible, gender=gender)
        for x in d
    )
    assert exact == brute_force("110105", d, visible, gender)


def test_the_failure_to_design_against_last4_plus_birth_year():
    """The old mask (last four) next to the birth year narrows an ID to ~33 numbers (365 days / 11)."""
    counts = [
        id_candidates(REGION, birth_year=y, visible=make_id(f"{y}0615", s)[-4:])
        for y, s in ((1949, 2), (1960, 17), (1988, 345), (2000, 999))
    ]
    assert all(20 <= c <= 50 for c in counts), counts
    assert max(counts) < MIN_CANDIDATES
    # the same last four WITHOUT the birth year is still thousands (1900–2025)
    assert id_candidates(REGION, visible=make_id("19600615", 17)[-4:]) >= MIN_CANDIDATES


def test_what_a_resident_export_reveals_leaves_at_least_1000_candidates(db_factory, tmp_path):
    eng = create_engine(db_factory.create(), poolclass=pool.NullPool)
    try:
        load_city(eng, tmp_path)
        b = tmp_path / "b.geojson"
        gdf([{"楼栋编码": f"{COMM_A}00001", "geometry": box(117.2030, 31.8050, 117.2035, 31.8055)}]).to_file(b)
        assert load_file(b, "building", engine=eng).status == "loaded"
        people = [
            ("19490615", 2, "赵一"),
            ("19600229", 17, "钱二"),
            ("19881231", 344, "孙三"),
            ("20000101", 999, "李四"),
        ]
        ids = {name: make_id(birth, seq) for birth, seq, name in people}
        roster = pd.DataFrame(
            {
                "楼栋编码": [f"{COMM_A}00001"] * 4,
                "户号": ["101", "101", "102", "103"],
                "姓名": list(ids),
                "身份证号": list(ids.values()),
            }
        )
        rp = tmp_path / "r.csv"
        roster.to_csv(rp, index=False)
        assert load_roster(rp, engine=eng, vault=VAULT).status == "loaded"
        for fmt in ("csv", "xlsx"):
            out = tmp_path / f"residents.{fmt}"
            assert export_level(eng, "resident", fmt, out, vault=VAULT) == 4
            df = pd.read_csv(out, dtype=str) if fmt == "csv" else pd.read_excel(out, dtype=str)
            for _, row in df.iterrows():
                true_id = ids[row["姓名"]]
                # what the file shows: birth year, gender, and the masked ID's visible tail
                shown = dict(
                    birth_year=int(row["出生年份"]), gender=row["性别"], visible=revealed_tail(row["身份证号"])
                )
                assert shown["birth_year"] == int(true_id[6:10]) and shown["visible"] == ""
                assert true_id.endswith(shown["visible"])
                n = id_candidates(true_id[:6], **shown)  # the attacker knows the region code too
                assert n >= MIN_CANDIDATES, (row["姓名"], n)
                assert n >= 182_000  # 365 days x 500 sequence numbers of the gender
                # had the export kept the last four, the same row would leave ~33
                old = id_candidates(
                    true_id[:6],
                    birth_year=shown["birth_year"],
                    gender=shown["gender"],
                    visible=revealed_tail(mask_id(true_id[-4:])),
                )
                assert old < 50
    finally:
        eng.dispose()


def test_revealed_tail():
    assert revealed_tail("**************002X") == "002X"
    assert revealed_tail("*" * 18) == ""
    assert revealed_tail(None) == ""
    with pytest.raises(ValueError):
        id_candidates("1101")
