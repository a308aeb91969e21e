"""The service-circle catalog: circles, walking profiles, service categories, requirement sets.

Loaded from ``layers/service_circles.yaml`` (``GISGOV_LAYERS_DIR``) and validated here; every error
names the entry and the rule it breaks. Pure data, no database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gisgov.errors import InvalidInput

CATALOG_FILE = "service_circles.yaml"


class CatalogError(InvalidInput):
    """The catalog file breaks a rule (the message names the entry and the rule)."""


@dataclass(frozen=True)
class Circle:
    code: str
    minutes: float
    distance_m: float
    name_zh: str
    name_en: str
    source: str = ""


@dataclass(frozen=True)
class Profile:
    code: str
    name_zh: str
    name_en: str
    speed_mps: float | None = None  # None: the circle's distance_m (the standards' distances)

    def budget_m(self, circle: Circle) -> float:
        if self.speed_mps is None:
            return float(circle.distance_m)
        return float(circle.minutes) * 60.0 * float(self.speed_mps)


@dataclass(frozen=True)
class Selector:
    category: str  # facility.category_code
    kinds: tuple[str, ...] = ()  # keywords matched against facility.kind (empty = all)

    def matches(self, category_code: pd.Series, kind: pd.Series) -> np.ndarray:
        m = np.array(category_code == self.category, dtype=bool)
        if self.kinds:
            # match on the distinct kinds only (a city has few kinds and many facilities)
            if isinstance(kind.dtype, pd.CategoricalDtype):
                codes, uniq = kind.cat.codes.to_numpy(), [str(u).lower() for u in kind.cat.categories]
            else:
                codes, uniq = pd.factorize(kind.fillna("").astype(str).str.lower(), use_na_sentinel=False)
            words = [w.lower() for w in self.kinds]
            hit_u = np.array([any(w in u for w in words) for u in uniq] + [False], dtype=bool)  # [-1] = NaN
            m &= hit_u[codes] if len(codes) else np.zeros(0, dtype=bool)
        return m


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str
    select: tuple[Selector, ...]

    @property
    def label(self) -> str:
        return f"{self.name_zh} {self.name_en}"

    def facility_mask(self, facilities: pd.DataFrame) -> np.ndarray:
        """Rows of ``facilities`` (columns ``category_code``, ``kind``) this category counts."""
        m = np.zeros(len(facilities), dtype=bool)
        kind = facilities["kind"] if "kind" in facilities else pd.Series([None] * len(facilities))
        for s in self.select:
            m |= s.matches(facilities["category_code"], kind)
        return m


@dataclass(frozen=True)
class Standard:
    code: str
    name_zh: str
    name_en: str
    applies_to: str  # urban | rural | all
    tiers: tuple[tuple[str, tuple[str, ...]], ...]  # (circle code, categories) by increasing minutes
    source: str = ""

    def requirements(self, tier: str) -> list[tuple[str, str]]:
        """(category, circle) pairs a complete circle of ``tier`` needs (cumulative tiers)."""
        out: list[tuple[str, str]] = []
        for circle, cats in self.tiers:
            out += [(c, circle) for c in cats]
            if circle == tier:
                return out
        raise CatalogError(f"标准没有该层级 standard {self.code!r} has no tier {tier!r} (rule: tier_exists)")


@dataclass(frozen=True)
class SpecialGroupRule:
    group: str
    category: str
    circle: str
    profile: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class NetworkParams:
    max_snap_m: float = 150.0
    reroute_radius_m: float = 300.0
    detour_factor: float = 1.3
    area_width_m: float = 25.0
    gap_radius_m: float = 60.0
    fragment_extra_m: float = 25.0  # a point joins the main network rather than a fragment up to this much farther
    max_access_m: float = 300.0  # a what-if / candidate site farther than this from a walkable edge is off the network


@dataclass(frozen=True)
class Catalog:
    circles: tuple[Circle, ...]
    profiles: tuple[Profile, ...]
    categories: tuple[Category, ...]
    standards: tuple[Standard, ...]
    special_groups: tuple[SpecialGroupRule, ...]
    distance_cap_m: float
    network: NetworkParams = field(default_factory=NetworkParams)
    checksum: str = ""
    path: str = ""

    # -- lookups ---------------------------------------------------------------------------
    def circle(self, code: str) -> Circle:
        for c in self.circles:
            if c.code == code:
                return c
        raise CatalogError(f"未知服务圈 unknown circle {code!r}; known: {', '.join(c.code for c in self.circles)}")

    def profile(self, code: str) -> Profile:
        for p in self.profiles:
            if p.code == code:
                return p
        raise CatalogError(f"未知步行人群 unknown profile {code!r}; known: {', '.join(p.code for p in self.profiles)}")

    def category(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise CatalogError(f"未知服务类别 unknown service category {code!r}; known: {', '.join(self.category_codes)}")

    def standard(self, code: str) -> Standard:
        for s in self.standards:
            if s.code == code:
                return s
        raise CatalogError(f"未知标准 unknown standard {code!r}; known: {', '.join(s.code for s in self.standards)}")

    @property
    def category_codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def budget_m(self, circle: str, profile: str) -> float:
        return self.profile(profile).budget_m(self.circle(circle))

    def budgets(self) -> pd.DataFrame:
        """One row per (profile, circle): minutes, distance budget in metres."""
        rows = [
            dict(
                profile=p.code,
                circle=c.code,
                minutes=c.minutes,
                distance_m=p.budget_m(c),
                speed_mps=p.speed_mps,
                name_zh=c.name_zh,
                name_en=c.name_en,
            )
            for p in self.profiles
            for c in self.circles
        ]
        return pd.DataFrame(rows)

    def subset(self, categories: list[str] | None) -> Catalog:
        """The same catalog restricted to some categories (standards keep their definition)."""
        if not categories:
            return self
        cats = tuple(self.category(c) for c in categories)
        return Catalog(
            self.circles,
            self.profiles,
            cats,
            self.standards,
            self.special_groups,
            self.distance_cap_m,
            self.network,
            self.checksum,
            self.path,
        )


# -- loading ------------------------------------------------------------------------------


def default_catalog_path() -> Path:
    from gisgov.config import get_settings

    return Path(get_settings().layers_dir) / CATALOG_FILE


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog YAML (default: ``<layers_dir>/service_circles.yaml``)."""
    p = Path(path) if path else default_catalog_path()
    if not p.exists():
        raise CatalogError(f"服务圈目录文件不存在 service-circle catalog {p} not found (rule: catalog_exists)")
    raw = p.read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise CatalogError(f"服务圈目录无法解析 {p}: not valid YAML: {exc}") from exc
    return parse_catalog(doc, checksum=hashlib.sha256(raw).hexdigest()[:16], path=str(p))


def _req(entry: dict, key: str, where: str):
    if not isinstance(entry, dict) or key not in entry or entry[key] in (None, ""):
        raise CatalogError(f"缺少必填项 {where}: missing {key!r} (rule: required_field)")
    return entry[key]


def _unique(codes: list[str], what: str) -> None:
    seen: set[str] = set()
    for c in codes:
        if c in seen:
            raise CatalogError(f"代码重复定义 {what} {c!r} defined twice (rule: unique_code)")
        seen.add(c)


def parse_catalog(doc: dict, *, checksum: str = "", path: str = "") -> Catalog:
    if not isinstance(doc, dict):
        raise CatalogError(
            "服务圈目录格式错误 catalog must be a mapping with circles, profiles, categories (rule: catalog_shape)"
        )
    circles = []
    for i, e in enumerate(doc.get("circles") or []):
        code = _req(e, "code", f"circles[{i}]")
        where = f"circle {code!r}"
        minutes, dist = float(_req(e, "minutes", where)), float(_req(e, "distance_m", where))
        if minutes <= 0 or dist <= 0:
            raise CatalogError(
                f"时间和距离须为正数 {where}: minutes and distance_m must be positive (rule: positive_budget)"
            )
        circles.append(Circle(code, minutes, dist, e.get("name_zh", code), e.get("name_en", code), e.get("source", "")))
    if not circles:
        raise CatalogError("目录中没有服务圈 catalog defines no circles (rule: circles_required)")
    circles.sort(key=lambda c: c.minutes)
    _unique([c.code for c in circles], "circle")

    profiles = []
    for i, e in enumerate(doc.get("profiles") or [{"code": "standard"}]):
        code = _req(e, "code", f"profiles[{i}]")
        speed = e.get("speed_mps")
        if speed is not None and not (0.1 <= float(speed) <= 3.0):
            raise CatalogError(
                f"步行速度超出范围 profile {code!r}: speed_mps {speed} outside 0.1–3.0 m/s (rule: walking_speed)"
            )
        profiles.append(
            Profile(code, e.get("name_zh", code), e.get("name_en", code), None if speed is None else float(speed))
        )
    _unique([p.code for p in profiles], "profile")

    categories = []
    for i, e in enumerate(doc.get("categories") or []):
        code = _req(e, "code", f"categories[{i}]")
        sel = _req(e, "select", f"category {code!r}")
        selectors = []
        for s in sel:
            fc = _req(s, "category", f"category {code!r} select")
            kinds = s.get("kinds") or []
            if isinstance(kinds, str):
                kinds = [kinds]
            selectors.append(Selector(str(fc), tuple(str(k) for k in kinds)))
        categories.append(Category(code, e.get("name_zh", code), e.get("name_en", code), tuple(selectors)))
    if not categories:
        raise CatalogError("目录中没有服务类别 catalog defines no service categories (rule: categories_required)")
    _unique([c.code for c in categories], "category")
    cat_codes = {c.code for c in categories}
    circle_codes = {c.code: c for c in circles}
    profile_codes = {p.code for p in profiles}

    standards = []
    for i, e in enumerate(doc.get("standards") or []):
        code = _req(e, "code", f"standards[{i}]")
        applies = e.get("applies_to", "all")
        if applies not in ("urban", "rural", "all"):
            raise CatalogError(
                f"适用范围无效 standard {code!r}: applies_to {applies!r} is not urban/rural/all (rule: applies_to)"
            )
        tiers = []
        for circle, cats in (_req(e, "tiers", f"standard {code!r}") or {}).items():
            if circle not in circle_codes:
                raise CatalogError(
                    f"标准层级不是服务圈 standard {code!r}: tier {circle!r} is not a circle (rule: tier_is_circle)"
                )
            for c in cats:
                if c not in cat_codes:
                    raise CatalogError(
                        f"未知服务类别 standard {code!r} tier {circle!r}: unknown category {c!r} (rule: category_exists)"
                    )
            tiers.append((circle, tuple(cats)))
        tiers.sort(key=lambda t: circle_codes[t[0]].minutes)
        standards.append(
            Standard(code, e.get("name_zh", code), e.get("name_en", code), applies, tuple(tiers), e.get("source", ""))
        )
    _unique([s.code for s in standards], "standard")

    groups = []
    for i, e in enumerate(doc.get("special_groups") or []):
        where = f"special_groups[{i}]"
        g = SpecialGroupRule(
            str(_req(e, "group", where)),
            str(_req(e, "category", where)),
            str(_req(e, "circle", where)),
            str(e.get("profile", profiles[0].code)),
            e.get("name_zh", ""),
            e.get("name_en", ""),
        )
        if g.category not in cat_codes:
            raise CatalogError(f"未知服务类别 {where}: unknown category {g.category!r} (rule: category_exists)")
        if g.circle not in circle_codes:
            raise CatalogError(f"未知服务圈 {where}: unknown circle {g.circle!r} (rule: tier_is_circle)")
        if g.profile not in profile_codes:
            raise CatalogError(f"未知步行人群 {where}: unknown profile {g.profile!r} (rule: profile_exists)")
        groups.append(g)

    net = doc.get("network") or {}
    params = NetworkParams(**{k: float(v) for k, v in net.items() if k in NetworkParams.__dataclass_fields__})
    cap = float(doc.get("distance_cap_m") or 0)
    largest = max(p.budget_m(c) for p in profiles for c in circles)
    if cap < largest:
        raise CatalogError(
            f"距离上限小于最大服务圈 distance_cap_m {cap:g} is below the largest circle budget {largest:g} m (rule: cap_covers_circles)"
        )
    return Catalog(
        tuple(circles), tuple(profiles), tuple(categories), tuple(standards), tuple(groups), cap, params, checksum, path
    )
