"""Special-group service rules (pure: no database, no HTTP).

- :class:`Config` from ``special_services.yaml``: per special group the services it needs most (catalog
  categories of the service-circle catalog, or inline categories in the catalog's syntax), the circle
  and walking profile they are checked with, the 走访 visit interval per group, the event category of
  a visit.
- :func:`beyond` decides, per resident and need, whether the nearest service lies beyond the budget.
- :func:`overdue` decides which members of groups with a visit rule are overdue.
- :func:`mask_name` masks a person's name for lists (``张*``, ``欧**``): only the first character shows.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from gisgov.coverage.catalog import Catalog as CoverageCatalog
from gisgov.coverage.catalog import Category, Selector
from gisgov.errors import InvalidInput

CONFIG_FILE = Path(__file__).with_name("special_services.yaml")
ENV = "GISGOV_SPECIAL_SERVICES"
MAX_DAYS = 366


class ConfigError(InvalidInput):
    """The special-services file breaks a rule (the message names the entry and the rule)."""


@dataclass(frozen=True)
class Need:
    group: str
    name_zh: str
    name_en: str
    services: tuple[Category, ...]

    @property
    def key(self) -> str:
        return self.group


@dataclass(frozen=True)
class Config:
    circle: str
    profile: str
    visit_category: str
    needs: tuple[Need, ...]
    visits: dict[str, int]
    checksum: str = ""

    def need(self, group: str) -> Need:
        for n in self.needs:
            if n.group == group:
                return n
        raise InvalidInput(
            f"未配置该人群的服务需求 no service need configured for group {group!r}; "
            f"configured: {', '.join(n.group for n in self.needs)}"
        )

    @property
    def groups(self) -> list[str]:
        return [n.group for n in self.needs]

    def budget_m(self, catalog: CoverageCatalog) -> float:
        return catalog.budget_m(self.circle, self.profile)

    def public(self, catalog: CoverageCatalog | None = None) -> dict:
        out = {
            "circle": self.circle,
            "profile": self.profile,
            "visit_category": self.visit_category,
            "needs": [
                {
                    "group": n.group,
                    "name_zh": n.name_zh,
                    "name_en": n.name_en,
                    "services": [
                        {
                            "code": s.code,
                            "name_zh": s.name_zh,
                            "name_en": s.name_en,
                            "select": [{"category": x.category, "kinds": list(x.kinds)} for x in s.select],
                        }
                        for s in n.services
                    ],
                }
                for n in self.needs
            ],
            "visits": [{"group": g, "days": d} for g, d in sorted(self.visits.items())],
        }
        if catalog is not None:
            out["budget_m"] = self.budget_m(catalog)
            out["minutes"] = catalog.circle(self.circle).minutes
        return out


def config_path() -> Path:
    return Path(os.environ.get(ENV) or CONFIG_FILE)


_cache: dict[tuple, Config] = {}


def load_config(path: str | Path | None = None, catalog: CoverageCatalog | None = None) -> Config:
    """Read and validate the file (default: ``GISGOV_SPECIAL_SERVICES`` or the packaged one); with the
    coverage ``catalog`` the services, circle and profile are resolved and checked against it."""
    p = Path(path) if path else config_path()
    if not p.exists():
        raise ConfigError(f"特殊人群服务配置文件不存在 special-services file {p} not found (rule: config_exists)")
    key = (str(p), p.stat().st_mtime_ns, catalog.checksum if catalog is not None else None, id(catalog))
    if key in _cache:
        return _cache[key]
    raw = p.read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"配置文件无法解析 {p}: not valid YAML: {exc}") from exc
    cfg = parse_config(doc, catalog, checksum=hashlib.sha256(raw).hexdigest()[:16])
    _cache.clear()
    _cache[key] = cfg
    return cfg


def _inline(e: dict, where: str) -> Category:
    code = e.get("code")
    if not isinstance(code, str) or not code:
        raise ConfigError(f"内联服务缺少代码 {where}: an inline service needs a code (rule: required_field)")
    sel = e.get("select")
    if not isinstance(sel, list) or not sel:
        raise ConfigError(
            f"须列出设施类别 {where} {code!r}: select must list facility categories (rule: required_field)"
        )
    out = []
    for s in sel:
        if not isinstance(s, dict) or not s.get("category"):
            raise ConfigError(
                f"每个选择条目须有类别 {where} {code!r}: each select entry needs a category (rule: required_field)"
            )
        kinds = s.get("kinds") or []
        kinds = [kinds] if isinstance(kinds, str) else kinds
        out.append(Selector(str(s["category"]), tuple(str(k) for k in kinds)))
    return Category(code, str(e.get("name_zh", code)), str(e.get("name_en", code)), tuple(out))


def parse_config(doc, catalog: CoverageCatalog | None = None, *, checksum: str = "") -> Config:
    if not isinstance(doc, dict):
        raise ConfigError(
            "配置文件格式错误 special-services file must be a mapping with needs and visits (rule: config_shape)"
        )
    circle, profile = str(doc.get("circle") or "c10"), str(doc.get("profile") or "elderly")
    if catalog is not None:
        catalog.circle(circle), catalog.profile(profile)  # raise naming the known ones
    inline: dict[str, Category] = {}
    needs: list[Need] = []
    seen: set[str] = set()
    for i, e in enumerate(doc.get("needs") or []):
        where = f"needs[{i}]"
        if not isinstance(e, dict) or not e.get("group"):
            raise ConfigError(f"缺少人群分组 {where}: missing 'group' (rule: required_field)")
        g = str(e["group"])
        if g in seen:
            raise ConfigError(f"人群重复定义 group {g!r} has two needs (rule: unique_group)")
        seen.add(g)
        services = []
        for s in e.get("services") or []:
            if isinstance(s, dict):
                c = _inline(s, f"{where} ({g})")
                if c.code in inline and inline[c.code] != c:
                    raise ConfigError(
                        f"服务重复且定义不同 service {c.code!r} defined twice differently (rule: unique_code)"
                    )
                inline[c.code] = c
            elif isinstance(s, str):
                if s in inline:
                    c = inline[s]
                elif catalog is not None:
                    try:
                        c = catalog.category(s)
                    except InvalidInput as exc:
                        raise ConfigError(f"服务不存在 {where} ({g}): {exc} (rule: service_exists)") from None
                else:
                    c = Category(s, s, s, (Selector(s),))  # unresolved (no catalog): a facility category
            else:
                raise ConfigError(
                    f"服务应为类别代码或内联类别 {where} ({g}): a service is a category code or an inline category (rule: service_shape)"
                )
            services.append(c)
        if not services:
            raise ConfigError(f"未列出服务 {where} ({g}): no services listed (rule: services_required)")
        needs.append(Need(g, str(e.get("name_zh", g)), str(e.get("name_en", g)), tuple(services)))
    visits: dict[str, int] = {}
    for g, d in (doc.get("visits") or {}).items():
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DAYS:
            raise ConfigError(
                f"走访天数应为范围内的整数 visits.{g}: days must be a whole number 1–{MAX_DAYS} (rule: visit_days)"
            )
        visits[str(g)] = int(d)
    vc = str(doc.get("visit_category") or "teshu")
    return Config(circle, profile, vc, tuple(needs), visits, checksum)


def check_groups(cfg: Config, known: set[str]) -> None:
    """Every group named in the file must be a special_group code."""
    for g in [*cfg.groups, *cfg.visits]:
        if g not in known:
            raise ConfigError(
                f"未知特殊人群 unknown special group {g!r}; known: {', '.join(sorted(known))} (rule: group_exists)"
            )


# -- decisions ------------------------------------------------------------------------------------------


def is_beyond(distance_m: float | None, budget_m: float) -> bool:
    """Beyond the circle: no reachable facility within the cap (None / inf / NaN) or farther than the budget."""
    return distance_m is None or not math.isfinite(distance_m) or distance_m > budget_m


def beyond(
    residents: list[dict], distances: dict[str, dict[int, float]], budget_m: float, needs: list[str]
) -> list[dict]:
    """For each resident row (``id``, ``building_id``, ``groups``) and each of its groups in ``needs``, one
    row ``{resident row…, group, distance_m}`` when the nearest service lies beyond the budget.
    ``distances``: group → building id → metres (missing = unreachable)."""
    out = []
    for r in residents:
        for g in r["groups"]:
            if g not in needs:
                continue
            d = distances.get(g, {}).get(r["building_id"])
            if is_beyond(d, budget_m):
                out.append(
                    {**r, "group": g, "distance_m": None if d is None or not math.isfinite(d) else round(float(d), 1)}
                )
    return out


def interval(groups: list[str], visits: dict[str, int]) -> tuple[int | None, str | None]:
    """The visit interval of a resident (the shortest of its groups' rules) and the group that sets it."""
    best = None
    for g in sorted(groups):
        d = visits.get(g)
        if d is not None and (best is None or d < best[0]):
            best = (d, g)
    return best if best else (None, None)


def overdue(residents: list[dict], visits: dict[str, int], now: datetime) -> list[dict]:
    """Members overdue for a visit: rows (``groups``, ``last_visit`` datetime or None) whose last visit is
    older than the shortest interval of their groups (never visited: overdue). Each output row gains
    ``days``, ``rule_group``, ``due`` (last visit + interval, None if never visited), ``days_overdue``
    (None if never visited)."""
    out = []
    for r in residents:
        days, rule_group = interval(list(r["groups"]), visits)
        if days is None:
            continue
        last = r.get("last_visit")
        if last is None:
            out.append({**r, "days": days, "rule_group": rule_group, "due": None, "days_overdue": None})
            continue
        due = last + timedelta(days=days)
        if due < now:
            out.append({**r, "days": days, "rule_group": rule_group, "due": due, "days_overdue": (now - due).days})
    return out


def group_overdue(groups: list[str], last_visit: datetime | None, visits: dict[str, int], now: datetime) -> set[str]:
    """The groups (of one resident) whose own rule the last visit misses: for per-group counts."""
    out = set()
    for g in groups:
        d = visits.get(g)
        if d is not None and (last_visit is None or last_visit + timedelta(days=d) < now):
            out.add(g)
    return out


def mask_name(name: str | None) -> str | None:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``, ``Li Lei`` → ``L*****``: only the first character."""
    if not name:
        return None
    name = name.strip()
    return name[:1] + "*" * max(1, len(name) - 1)
