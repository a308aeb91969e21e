"""Grid sizing rules (网格划分规则), configurable per city and selectable per community.

Defaults follow the source reports: "按照300-500户，不超过1000人的原则" for urban communities.
Rural communities (``community.rule_set = 'rural'``) group by village group / natural village
(村民小组 / 自然村), which are smaller and sparser; their defaults are looser and every value can
be overridden per city (``gisgov_meta`` key ``grid_rules``) or per call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gisgov.errors import InvalidInput

#: China's average household size (7th census, 2020): used only where a building has households
#: but no resident records, and then flagged as estimated.
CENSUS_HOUSEHOLD_SIZE = 2.62


@dataclass(frozen=True)
class GridRules:
    """The rule set one community's grids must obey."""

    name: str = "urban"
    min_households: int = 300
    max_households: int = 500
    max_people: int = 1000
    #: gaps/overlaps narrower than this (metres) are digitising noise, not rule breaks
    tolerance_m: float = 0.5
    #: cut cost multiplier of a boundary running along an arterial road or river
    #: (< 1 = boundaries prefer to follow them; a grid spanning one pays the difference)
    barrier_weight: float = 0.15
    #: barrier classes: road_edge.class values and barrier.kind values
    barrier_road_classes: tuple[str, ...] = ("arterial",)
    barrier_kinds: tuple[str, ...] = ("river", "water", "rail")
    #: people per household where a building has no resident records
    household_size: float = CENSUS_HOUSEHOLD_SIZE
    #: keep compounds whole unless a compound alone exceeds max_households
    keep_compounds_whole: bool = True
    #: grid exceptions a planner may mark (grid.exception): allowed kinds
    exception_kinds: tuple[str, ...] = field(default=("multipart",))
    #: grid outlines shown and saved are simplified as one coverage with this tolerance (metres): removes the
    #: saw-teeth territories make along streets (~4 m deep), keeps compound corners
    outline_simplify_m: float = 8.0

    def __post_init__(self) -> None:
        if self.min_households < 0 or self.max_households <= 0:
            raise InvalidInput(
                f"网格规则无效：户数上下限须为正数 grid rules {self.name}: household bounds must be positive "
                f"(got {self.min_households}-{self.max_households})"
            )
        if self.min_households > self.max_households:
            raise InvalidInput(
                f"网格规则无效：户数下限大于上限 grid rules {self.name}: min_households {self.min_households} > max_households {self.max_households}"
            )
        if self.max_people <= 0:
            raise InvalidInput(
                f"网格规则无效：人数上限须为正数 grid rules {self.name}: max_people must be positive (got {self.max_people})"
            )
        if self.tolerance_m < 0:
            raise InvalidInput(
                f"网格规则无效：容差不能为负 grid rules {self.name}: tolerance_m must be >= 0 (got {self.tolerance_m})"
            )
        if not 0 <= self.barrier_weight <= 1:
            raise InvalidInput(
                f"网格规则无效：障碍权重须在零到一之间 grid rules {self.name}: barrier_weight must be in [0, 1] (got {self.barrier_weight})"
            )

    @property
    def target_households(self) -> float:
        return (self.min_households + self.max_households) / 2

    def with_overrides(self, **kw: Any) -> GridRules:
        """A copy with the given (non-None) values replaced; unknown keys are refused."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(kw) - known)
        if bad:
            raise InvalidInput(f"未知网格规则 unknown grid rule(s) {bad}; known: {sorted(known)}")
        clean: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in kw.items() if v is not None}
        return replace(self, **clean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


URBAN = GridRules()
RURAL = GridRules(name="rural", min_households=100, max_households=500, max_people=1500)
DEFAULT_RULE_SETS: dict[str, GridRules] = {"urban": URBAN, "rural": RURAL}


def rule_sets_from_config(config: dict[str, Any] | None) -> dict[str, GridRules]:
    """Rule sets of a city: defaults updated by a mapping ``{"urban": {...}, "rural": {...}}``."""
    out = dict(DEFAULT_RULE_SETS)
    for name, values in (config or {}).items():
        if not isinstance(values, dict):
            raise InvalidInput(
                f"网格规则集须为映射 grid rule set {name!r} must be a mapping, got {type(values).__name__}"
            )
        base = out.get(name, replace(URBAN, name=name))
        out[name] = base.with_overrides(**{k: v for k, v in values.items() if k != "name"})
    return out
