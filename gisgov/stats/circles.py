"""Which service-circle figures the leaders' view shows, taken from the coverage catalog (pure).

Default: the 15-minute convenience circle of towns (standard ``report16_town``, tier ``c15``): the
share of households within 15 minutes of each of its 16 categories, and the share with a complete
circle (all 16 within their budget). Walking profile ``standard`` unless asked otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gisgov.coverage.catalog import Catalog
from gisgov.errors import InvalidInput

DEFAULT_STANDARD = "report16_town"
DEFAULT_TIER = "c15"
DEFAULT_PROFILE = "standard"
RULE_SETS = {"urban": ("urban",), "rural": ("rural",), "all": ("urban", "rural")}


@dataclass(frozen=True)
class CircleSpec:
    standard: str
    standard_zh: str
    standard_en: str
    circle: str
    circle_zh: str
    minutes: float
    profile: str
    profile_zh: str
    categories: tuple[tuple[str, str, str], ...]  # (code, name_zh, name_en), shown one by one
    requirements: tuple[tuple[str, str], ...]  # (category, circle) pairs of a complete circle
    rule_sets: tuple[str, ...]  # communities the complete circle applies to

    def params(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "circle": self.circle,
            "categories": [c for c, _, _ in self.categories],
            "req_categories": [c for c, _ in self.requirements],
            "req_circles": [t for _, t in self.requirements],
            "rule_sets": list(self.rule_sets),
        }

    def meta(self) -> dict[str, Any]:
        return {
            "standard": self.standard,
            "name_zh": self.standard_zh,
            "name_en": self.standard_en,
            "circle": self.circle,
            "circle_zh": self.circle_zh,
            "minutes": self.minutes,
            "profile": self.profile,
            "profile_zh": self.profile_zh,
            "applies_to": list(self.rule_sets),
            "categories": [{"code": c, "name_zh": z, "name_en": e} for c, z, e in self.categories],
        }


def circle_spec(
    catalog: Catalog, *, profile: str = DEFAULT_PROFILE, standard: str = DEFAULT_STANDARD, tier: str = DEFAULT_TIER
) -> CircleSpec:
    """The figures to show for ``standard``'s ``tier`` and walking ``profile`` (422 if unknown)."""
    if profile not in {p.code for p in catalog.profiles}:
        raise InvalidInput(
            f"未知步行方式 unknown walking profile {profile!r}: one of {', '.join(p.code for p in catalog.profiles)}"
        )
    std = catalog.standard(standard)
    reqs = std.requirements(tier)
    seen: list[str] = []
    for cat, _ in reqs:
        if cat not in seen:
            seen.append(cat)
    circle = catalog.circle(tier)
    prof = catalog.profile(profile)
    return CircleSpec(
        standard=std.code,
        standard_zh=std.name_zh,
        standard_en=std.name_en,
        circle=circle.code,
        circle_zh=circle.name_zh,
        minutes=circle.minutes,
        profile=prof.code,
        profile_zh=prof.name_zh,
        categories=tuple((c, catalog.category(c).name_zh, catalog.category(c).name_en) for c in seen),
        requirements=tuple(reqs),
        rule_sets=RULE_SETS.get(std.applies_to, ("urban", "rural")),
    )
