"""Households, residents and special groups of the synthetic city (pure numpy, no per-person loops).

Households fill the dwellings of each building (unit × floor × door) at an occupancy rate; their
sizes follow a distribution with mean ≈ 2.6 (China's 2020 census: 2.62), older compounds having
more one- and two-person (elderly) households. Each household is drawn from a family template
(single, couple, couple + child, three generations …) that fixes roles (户主/配偶/子女/父母/孙辈/
兄弟姐妹/其他) and ages relative to the head. ID numbers follow GB 11643 with the county code of
the sample and are unique; they are synthetic and exist in clear only here and in the GeoPackage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gisgov.sample import names as nm
from gisgov.sample.layout import COUNTY, OCCUPANCY, REFERENCE_YEAR
from gisgov.security.pii import id_check_digit

REFERENCE_DAY = 327  # 2024-11-23, day of year (0-based) the survey refers to
SIZE_P = {True: (0.26, 0.32, 0.22, 0.12, 0.06, 0.02), False: (0.21, 0.30, 0.26, 0.13, 0.07, 0.03)}
RESIDENCE = ("常住", "流动", "户籍")
RESIDENCE_P = {True: (0.75, 0.20, 0.05), False: (0.85, 0.10, 0.05)}

# Family templates: size, head age range, P(head male), members after the head as (role, age rule,
# gender rule), weight in old and in new compounds. Age rules: spouse (head ±), child, parent,
# sibling, grandchild; gender rules: opp (opposite of head), M, F, R (random).
TEMPLATES = [
    (1, (20, 39), 0.60, [], 0.36, 0.54),
    (1, (40, 59), 0.50, [], 0.20, 0.22),
    (1, (60, 92), 0.30, [], 0.44, 0.24),
    (2, (23, 39), 0.70, [("配偶", "spouse", "opp")], 0.20, 0.38),
    (2, (40, 59), 0.70, [("配偶", "spouse", "opp")], 0.25, 0.25),
    (2, (60, 88), 0.70, [("配偶", "spouse", "opp")], 0.40, 0.19),
    (2, (32, 58), 0.30, [("子女", "child", "R")], 0.10, 0.13),
    (2, (62, 85), 0.35, [("子女", "child", "R")], 0.05, 0.05),
    (3, (26, 56), 0.70, [("配偶", "spouse", "opp"), ("子女", "child", "R")], 0.75, 0.82),
    (3, (30, 55), 0.70, [("配偶", "spouse", "opp"), ("父母", "parent", "F")], 0.12, 0.08),
    (3, (32, 55), 0.40, [("子女", "child", "R"), ("父母", "parent", "R")], 0.13, 0.10),
    (4, (28, 52), 0.70, [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("子女", "child", "R")], 0.45, 0.50),
    (4, (30, 52), 0.70, [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("父母", "parent", "F")], 0.40, 0.38),
    (4, (28, 50), 0.70, [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("兄弟姐妹", "sibling", "R")], 0.15, 0.12),
    (
        5,
        (30, 50),
        0.70,
        [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("父母", "parent", "M"), ("父母", "parent", "F")],
        0.55,
        0.55,
    ),
    (
        5,
        (30, 50),
        0.70,
        [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("子女", "child", "R"), ("父母", "parent", "F")],
        0.30,
        0.30,
    ),
    (
        5,
        (55, 75),
        0.75,
        [("配偶", "spouse", "opp"), ("子女", "child", "R"), ("其他", "child", "R"), ("孙辈", "grandchild", "R")],
        0.15,
        0.15,
    ),
    (
        6,
        (32, 50),
        0.70,
        [
            ("配偶", "spouse", "opp"),
            ("子女", "child", "R"),
            ("子女", "child", "R"),
            ("父母", "parent", "M"),
            ("父母", "parent", "F"),
        ],
        0.55,
        0.55,
    ),
    (
        6,
        (55, 78),
        0.75,
        [
            ("配偶", "spouse", "opp"),
            ("子女", "child", "R"),
            ("其他", "child", "R"),
            ("孙辈", "grandchild", "R"),
            ("孙辈", "grandchild", "R"),
        ],
        0.45,
        0.45,
    ),
]

# Special groups (特殊人群): share of all residents, who is eligible, weighting.
# Together ≈ 6% of records on ≈ 5.6% of people (seed 001: 6,596 of ~118k).
GROUP_RATES = {
    "dibao": 0.011,
    "dibian": 0.005,
    "tekun": 0.0012,
    "canji": 0.013,
    "dujulaoren": 0.010,
    "liushouertong": 0.0012,
    "kunjingertong": 0.0008,
    "shequjiaozheng": 0.0005,
    "xingmanshifang": 0.0008,
    "xidu": 0.0005,
    "jingshen": 0.004,
    "xinfang": 0.0003,
    "shiye": 0.008,
    "youfu": 0.003,
}


@dataclass
class People:
    households: pd.DataFrame  # code, building_code, door_no, residence, size
    residents: pd.DataFrame  # resident_no, household_code, name, gender, birth_year, birth_date, role, id_number, phone
    groups: pd.DataFrame  # resident_no, group_code


def make_people(rng: np.random.Generator, buildings: pd.DataFrame) -> People:
    """Households and residents for buildings (columns code, floors, units, per_floor, old)."""
    hh, b_of_h = _households(rng, buildings)
    res, h_of_r = _residents(rng, hh, buildings["old"].to_numpy()[b_of_h])
    groups = _special_groups(rng, res, hh, h_of_r, buildings["old"].to_numpy()[b_of_h])
    return People(households=hh, residents=res, groups=groups)


def _households(rng, b: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    per_unit = (b["floors"] * b["per_floor"]).to_numpy()
    n = (per_unit * b["units"].to_numpy()).astype(int)
    bi = np.repeat(np.arange(len(b)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    unit = k // per_unit[bi] + 1
    rem = k % per_unit[bi]
    floor = rem // b["per_floor"].to_numpy()[bi] + 1
    door = rem % b["per_floor"].to_numpy()[bi] + 1
    old = b["old"].to_numpy()
    occupied = rng.random(len(bi)) < np.where(old[bi], OCCUPANCY[True], OCCUPANCY[False])
    bi, unit, floor, door = bi[occupied], unit[occupied], floor[occupied], door[occupied]
    seq = pd.Series(bi).groupby(bi).cumcount().to_numpy() + 1
    codes = b["code"].to_numpy()[bi]
    size = np.empty(len(bi), dtype=np.int64)
    residence = np.empty(len(bi), dtype=object)
    for flag in (True, False):
        m = old[bi] == flag
        size[m] = rng.choice(np.arange(1, 7), size=m.sum(), p=SIZE_P[flag])
        residence[m] = rng.choice(RESIDENCE, size=m.sum(), p=RESIDENCE_P[flag])
    hh = pd.DataFrame(
        {
            "code": pd.Series(codes, dtype=object) + pd.Series(seq).map("{:04d}".format),
            "building_code": codes,
            "door_no": pd.Series(unit).astype(str) + "单元" + pd.Series(floor * 100 + door).astype(str),
            "residence": residence,
            "size": size,
        }
    )
    return hh, bi


def _template_table():
    rows = []
    for t, (size, _, _, members, _, _) in enumerate(TEMPLATES):
        rows.append((t, "户主", "head", "head"))
        rows.extend((t, role, rule, g) for role, rule, g in members)
        assert len(members) + 1 == size
    return pd.DataFrame(rows, columns=["template", "role", "rule", "gender"])


def _residents(rng, hh: pd.DataFrame, old_h: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    size = hh["size"].to_numpy()
    nh = len(hh)
    tsize = np.array([t[0] for t in TEMPLATES])
    t_h = np.empty(nh, dtype=np.int64)
    for s in range(1, 7):
        for flag in (True, False):
            m = (size == s) & (old_h == flag)
            cand = np.nonzero(tsize == s)[0]
            w = np.array([TEMPLATES[i][4 if flag else 5] for i in cand])
            t_h[m] = rng.choice(cand, size=m.sum(), p=w / w.sum())
    lo = np.array([t[1][0] for t in TEMPLATES])[t_h]
    hi = np.array([t[1][1] for t in TEMPLATES])[t_h]
    head_age = rng.integers(lo, hi + 1)
    head_male = rng.random(nh) < np.array([t[2] for t in TEMPLATES])[t_h]

    table = _template_table()
    start = table.groupby("template").cumcount().eq(0).to_numpy().nonzero()[0]
    h_of_r = np.repeat(np.arange(nh), size)
    within = np.arange(len(h_of_r)) - np.repeat(np.cumsum(size) - size, size)
    member = start[t_h[h_of_r]] + within
    role = table["role"].to_numpy()[member]
    rule = table["rule"].to_numpy()[member]
    grule = table["gender"].to_numpy()[member]
    n = len(h_of_r)

    ha = head_age[h_of_r].astype(float)
    u = rng.random(n)
    age = np.select(
        [rule == "head", rule == "spouse", rule == "child", rule == "parent", rule == "sibling", rule == "grandchild"],
        [
            ha,
            ha + rng.integers(-5, 4, size=n),
            ha - 22 - u * np.clip(ha - 22, 0, 14),
            ha + 22 + u * 10,
            np.maximum(16, ha + rng.integers(-8, 9, size=n)),
            ha - 46 - u * np.clip(ha - 46, 0, 20),
        ],
    )
    age = np.clip(np.round(age), 0, 99).astype(np.int64)
    hm = head_male[h_of_r]
    male = np.select(
        [grule == "head", grule == "opp", grule == "M", grule == "F"],
        [hm, ~hm, True, False],
        default=rng.random(n) < 0.51,
    )

    birth_year = REFERENCE_YEAR - age
    last_day = np.where(birth_year == REFERENCE_YEAR, REFERENCE_DAY, 365)
    leap = (birth_year % 4 == 0) & ((birth_year % 100 != 0) | (birth_year % 400 == 0))
    doy = np.minimum((rng.random(n) * (last_day + leap)).astype(np.int64), last_day + leap - 1)
    birth_date = (birth_year - 1970).astype("datetime64[Y]").astype("datetime64[D]") + doy
    ymd = np.datetime_as_string(birth_date, unit="D")

    # names: household surname for head, children, grandchildren, siblings, the head's father
    sur_p = nm.SURNAME_WEIGHTS / nm.SURNAME_WEIGHTS.sum()
    h_sur = nm.pick_chars(rng, nm.SURNAMES, nh, sur_p)[h_of_r]
    own_sur = nm.pick_chars(rng, nm.SURNAMES, n, sur_p)
    keeps = np.isin(role, ["户主", "子女", "孙辈", "兄弟姐妹"]) | ((role == "父母") & male)
    surname = np.where(keeps, h_sur, own_sur)
    g1 = np.where(male, nm.pick_chars(rng, nm.GIVEN_MALE, n), nm.pick_chars(rng, nm.GIVEN_FEMALE, n))
    g2 = np.where(male, nm.pick_chars(rng, nm.GIVEN_MALE, n), nm.pick_chars(rng, nm.GIVEN_FEMALE, n))
    two = rng.random(n) < 0.75
    name = np.char.add(np.char.add(surname, g1), np.where(two, g2, ""))

    res = pd.DataFrame(
        {
            "resident_no": np.arange(1, n + 1),
            "household_code": hh["code"].to_numpy()[h_of_r],
            "name": name.astype(object),
            "gender": np.where(male, "男", "女").astype(object),
            "birth_year": birth_year,
            "birth_date": ymd.astype(object),
            "role": role.astype(object),
            "id_number": _id_numbers(ymd, male).astype(object),
            "phone": _phones(rng, age),
        }
    )
    return res, h_of_r


def _id_numbers(ymd: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Unique GB 11643 numbers: county + birth date + sequence (odd = male) + check character."""
    digits8 = np.char.replace(ymd.astype(str), "-", "")
    key = pd.DataFrame({"d": digits8, "m": male})
    rank = key.groupby(["d", "m"], sort=False).cumcount().to_numpy()
    if rank.max() >= 500:  # pragma: no cover - needs > 500 people per birthday
        raise ValueError("too many people share a birth date for 3-digit ID sequences (rule: id_sequence)")
    offset = (digits8.astype(np.int64) * 7919) % 500
    seq = 2 * ((rank * 37 + offset) % 500) + male.astype(np.int64)
    first17 = np.char.add(np.char.add(COUNTY, digits8), np.char.zfill(seq.astype(str), 3))
    return np.array([f + id_check_digit(f) for f in first17.tolist()])


def _phones(rng, age: np.ndarray) -> np.ndarray:
    n = len(age)
    p = np.select([age < 12, age < 18, age < 70], [0.0, 0.5, 0.95], 0.7)
    has = rng.random(n) < p
    prefix = np.array(nm.MOBILE_PREFIXES)[rng.integers(len(nm.MOBILE_PREFIXES), size=n)]
    rest = np.char.zfill(rng.integers(0, 10**8, size=n).astype(str), 8)
    return np.where(has, np.char.add(prefix, rest), None).astype(object)


def _pick(rng, n_total: int, rate: float, eligible: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    idx = np.nonzero(eligible)[0]
    k = min(len(idx), int(round(rate * n_total)))
    if k == 0:
        return idx[:0]
    w = np.ones(len(idx)) if weight is None else weight[idx].astype(float)
    return np.sort(rng.choice(idx, size=k, replace=False, p=w / w.sum()))


def _special_groups(rng, res: pd.DataFrame, hh: pd.DataFrame, h_of_r: np.ndarray, old_h: np.ndarray) -> pd.DataFrame:
    n = len(res)
    age = REFERENCE_YEAR - res["birth_year"].to_numpy()
    male = res["gender"].to_numpy() == "男"
    size = hh["size"].to_numpy()[h_of_r]
    out: dict[str, np.ndarray] = {}

    # household-level benefits: whole households, more often in old compounds
    hw = np.where(old_h, 2.0, 1.0) / hh["size"].to_numpy()
    taken = np.zeros(len(hh), dtype=bool)
    for code in ("dibao", "dibian"):
        target = GROUP_RATES[code] * n
        order = rng.choice(len(hh), size=len(hh), replace=False, p=hw / hw.sum())
        order = order[~taken[order]]
        k = int(np.searchsorted(np.cumsum(hh["size"].to_numpy()[order]), target)) + 1
        chosen = np.zeros(len(hh), dtype=bool)
        chosen[order[:k]] = True
        taken |= chosen
        out[code] = np.nonzero(chosen[h_of_r])[0]

    canji = _pick(rng, n, GROUP_RATES["canji"], np.ones(n, dtype=bool), 1 + age / 25)
    out["canji"] = canji
    is_canji = np.zeros(n, dtype=bool)
    is_canji[canji] = True
    alone_old = (size == 1) & (age >= 60)
    out["tekun"] = _pick(rng, n, GROUP_RATES["tekun"], (size == 1) & ((age >= 60) | is_canji))
    out["dujulaoren"] = _pick(rng, n, GROUP_RATES["dujulaoren"], alone_old, np.maximum(age - 55, 1))
    child = age < 16
    out["liushouertong"] = _pick(rng, n, GROUP_RATES["liushouertong"], child)
    in_dibao = np.zeros(n, dtype=bool)
    in_dibao[out["dibao"]] = True
    out["kunjingertong"] = _pick(rng, n, GROUP_RATES["kunjingertong"], age < 18, np.where(in_dibao, 10.0, 1.0))
    adult = (age >= 18) & (age <= 65)
    out["shequjiaozheng"] = _pick(rng, n, GROUP_RATES["shequjiaozheng"], adult, np.where(male, 6.0, 1.0))
    out["xingmanshifang"] = _pick(
        rng, n, GROUP_RATES["xingmanshifang"], (age >= 20) & (age <= 70), np.where(male, 9.0, 1.0)
    )
    out["xidu"] = _pick(rng, n, GROUP_RATES["xidu"], (age >= 18) & (age <= 60), np.where(male, 4.0, 1.0))
    out["jingshen"] = _pick(rng, n, GROUP_RATES["jingshen"], age >= 15)
    out["xinfang"] = _pick(rng, n, GROUP_RATES["xinfang"], age >= 30)
    out["shiye"] = _pick(rng, n, GROUP_RATES["shiye"], (age >= 18) & (age <= 59))
    out["youfu"] = _pick(rng, n, GROUP_RATES["youfu"], age >= 40, np.where(male, 8.0, 1.0) * (1 + (age >= 70)))

    no = res["resident_no"].to_numpy()
    frames = [pd.DataFrame({"resident_no": no[idx], "group_code": code}) for code, idx in out.items()]
    g = pd.concat(frames, ignore_index=True)
    return g.sort_values(["resident_no", "group_code"], kind="stable").reset_index(drop=True)
