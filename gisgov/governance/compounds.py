"""Compound rules 小区治理规则 (pure: compounds in, breaches and per-community figures out).

The rules and their thresholds come from ``compound_rules.yaml`` next to this module (or the file
named by ``GISGOV_COMPOUND_RULES``):

- ``large_no_party_org``: households ≥ ``large_households`` (200) and no party organisation;
- ``large_no_service_point``: households ≥ ``large_households`` and no 党群服务点 (service point);
- ``old_no_property``: built before ``old_before_year`` (2000) and its property mode is none of
  ``managed_modes`` (物业公司 / 业主自治 / 社区兜底), i.e. not under property management.

Per community: the breaches, the property-mode shares (物业公司 / 业主自治 / 社区兜底 / 无 none) over
all its compounds, and the 老旧小区 ratio = compounds built before ``old_before_year`` / compounds
with a known year (the reports' 177 / 267 = 65.9 %); compounds with no year are counted apart.

A compound's households: its household rows, or the building's recorded (estimated) households when
a building has no roster (the same rule as the statistics).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gisgov.errors import GisgovError

DEFAULT_PATH = Path(__file__).with_name("compound_rules.yaml")
PROPERTY_MODES = ("物业公司", "业主自治", "社区兜底")
MODE_EN = {
    "物业公司": "property company",
    "业主自治": "owners' self-management",
    "社区兜底": "community fallback",
    None: "none",
}
NO_MODE = "无"  # key of compounds without a property mode in the shares
RULE_CODES = ("large_no_party_org", "large_no_service_point", "old_no_property")


class RulesError(GisgovError):
    status_code = 500


class RuleText(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    zh: str
    en: str


class CompoundRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    large_households: int = Field(200, ge=1, le=100_000)
    old_before_year: int = Field(2000, ge=1900, le=2100)
    managed_modes: tuple[str, ...] = PROPERTY_MODES
    rules: dict[str, RuleText]

    @model_validator(mode="after")
    def _known(self):
        unknown = set(self.rules) - set(RULE_CODES)
        if unknown:
            raise ValueError(f"unknown compound rules {sorted(unknown)} (known: {', '.join(RULE_CODES)})")
        bad = set(self.managed_modes) - set(PROPERTY_MODES)
        if bad:
            raise ValueError(f"managed_modes {sorted(bad)} are not property modes ({', '.join(PROPERTY_MODES)})")
        return self

    def enabled(self, code: str) -> bool:
        r = self.rules.get(code)
        return r is not None and r.enabled

    def label(self, code: str) -> str:
        r = self.rules[code]
        fill = {"large_households": self.large_households, "old_before_year": self.old_before_year}
        return f"{r.zh.format(**fill)} {r.en.format(**fill)}"

    def public(self) -> dict:
        return {
            "large_households": self.large_households,
            "old_before_year": self.old_before_year,
            "managed_modes": list(self.managed_modes),
            "rules": [
                {"code": c, "enabled": self.enabled(c), "label": self.label(c)} for c in RULE_CODES if c in self.rules
            ],
        }


def rules_path() -> Path:
    from gisgov.governance.settings import get_governance_settings

    name = os.environ.get("GISGOV_COMPOUND_RULES") or get_governance_settings().compound_rules
    return Path(name) if name else DEFAULT_PATH


def parse_rules(doc: dict, source: str = "compound rules") -> CompoundRules:
    try:
        return CompoundRules.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RulesError(f"小区规则配置错误 {source}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@lru_cache
def _load(path: str) -> CompoundRules:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"小区规则配置无法读取 cannot read compound rules {path}: {exc}") from None
    return parse_rules(doc or {}, path)


def load_rules() -> CompoundRules:
    """The configured rules (read once per file; ``load_rules.cache_clear()`` is ``_load.cache_clear()``)."""
    return _load(str(rules_path()))


load_rules.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Compound:
    code: str
    community_code: str
    name: str
    households: int
    year_built: int | None
    property_mode: str | None
    has_party_org: bool
    has_service_point: bool


def is_old(c: Compound, rules: CompoundRules) -> bool | None:
    """Built before the threshold year; None when the year is unknown."""
    return None if c.year_built is None else c.year_built < rules.old_before_year


def breaches_of(c: Compound, rules: CompoundRules) -> list[str]:
    """The rule codes a compound breaks, in :data:`RULE_CODES` order."""
    out = []
    large = c.households >= rules.large_households
    if large and not c.has_party_org and rules.enabled("large_no_party_org"):
        out.append("large_no_party_org")
    if large and not c.has_service_point and rules.enabled("large_no_service_point"):
        out.append("large_no_service_point")
    if is_old(c, rules) and c.property_mode not in rules.managed_modes and rules.enabled("old_no_property"):
        out.append("old_no_property")
    return out


def check(compounds: Iterable[Compound], rules: CompoundRules) -> dict:
    """Breaches (one entry per compound that breaks a rule) and per-community figures.

    Returns ``{"rules", "breaches": [{code, name, community_code, households, year_built,
    property_mode, has_party_org, has_service_point, rules: [...], labels: [...]}],
    "communities": [{code, compounds, large, old, known_year, unknown_year, old_ratio,
    property_modes: {mode: {n, share}}, old_property_modes, breaches: {rule: n}}], "totals": {...}}``,
    everything ordered by code."""
    compounds = sorted(compounds, key=lambda c: c.code)
    breaches = []
    per: dict[str, list[Compound]] = defaultdict(list)
    for c in compounds:
        per[c.community_code].append(c)
        found = breaches_of(c, rules)
        if found:
            breaches.append(
                {
                    "code": c.code,
                    "name": c.name,
                    "community_code": c.community_code,
                    "households": c.households,
                    "year_built": c.year_built,
                    "property_mode": c.property_mode,
                    "has_party_org": c.has_party_org,
                    "has_service_point": c.has_service_point,
                    "rules": found,
                    "labels": [rules.label(r) for r in found],
                }
            )
    by_comm = {}
    for b in breaches:
        by_comm.setdefault(b["community_code"], Counter()).update(b["rules"])
    communities = [summarise(code, per[code], rules, by_comm.get(code, Counter())) for code in sorted(per)]
    totals = summarise("", compounds, rules, sum(by_comm.values(), Counter()))
    totals.pop("code")
    return {"rules": rules.public(), "breaches": breaches, "communities": communities, "totals": totals}


def _share(n: int, total: int) -> float | None:
    return None if total == 0 else round(n / total, 4)


def summarise(code: str, cs: list[Compound], rules: CompoundRules, breach_counts: Counter) -> dict:
    n = len(cs)
    known = [c for c in cs if c.year_built is not None]
    old = [c for c in known if c.year_built < rules.old_before_year]
    modes = Counter(c.property_mode if c.property_mode in PROPERTY_MODES else NO_MODE for c in cs)
    old_modes = Counter(c.property_mode if c.property_mode in PROPERTY_MODES else NO_MODE for c in old)
    keys = (*PROPERTY_MODES, NO_MODE)
    return {
        "code": code,
        "compounds": n,
        "households": sum(c.households for c in cs),
        "large": sum(1 for c in cs if c.households >= rules.large_households),
        "old": len(old),
        "known_year": len(known),
        "unknown_year": n - len(known),
        "old_ratio": _share(len(old), len(known)),
        "property_modes": {k: {"n": modes[k], "share": _share(modes[k], n)} for k in keys},
        "old_property_modes": {k: old_modes[k] for k in keys},
        "breaches": {r: breach_counts.get(r, 0) for r in RULE_CODES if rules.enabled(r)},
    }
