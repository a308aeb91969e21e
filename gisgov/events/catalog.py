"""The event catalog: categories (with SLA hours) and handling departments.

The default is ``categories.yaml`` next to this module; ``GISGOV_EVENTS_CATALOG`` names another file
of the same shape. The catalog is read once per process (``load_catalog.cache_clear()`` re-reads it).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from gisgov.errors import GisgovError, InvalidInput

DEFAULT_PATH = Path(__file__).with_name("categories.yaml")
ENV = "GISGOV_EVENTS_CATALOG"

Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class CatalogError(GisgovError):
    status_code = 500


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: Code
    zh: str
    en: str

    @property
    def label(self) -> str:
        return f"{self.zh} {self.en}"


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: Code
    zh: str
    en: str
    sla_hours: float = Field(gt=0, le=24 * 365)
    department: Code
    season: tuple[float, ...] = (1.0,) * 12

    @property
    def label(self) -> str:
        return f"{self.zh} {self.en}"

    @model_validator(mode="after")
    def _season(self):
        if len(self.season) != 12 or min(self.season) < 0:
            raise ValueError(f"category {self.code}: season needs 12 non-negative weights (Jan..Dec)")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    categories: tuple[Category, ...]
    departments: tuple[Department, ...]

    @model_validator(mode="after")
    def _unique(self):
        for kind, items in (("category", self.categories), ("department", self.departments)):
            codes = [x.code for x in items]
            dup = sorted({c for c in codes if codes.count(c) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} codes: {', '.join(dup)}")
        if not self.categories:
            raise ValueError("the catalog needs at least one category")
        known = {d.code for d in self.departments}
        for c in self.categories:
            if c.department not in known:
                raise ValueError(f"category {c.code}: unknown department {c.department}")
        return self

    def category(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise InvalidInput(
            f"未知事件类别 unknown event category {code!r}; known: "
            + ", ".join(f"{c.code} ({c.zh})" for c in self.categories)
        )

    def department(self, code: str) -> Department:
        for d in self.departments:
            if d.code == code:
                return d
        raise InvalidInput(
            f"未知处置部门 unknown department {code!r}; known: "
            + ", ".join(f"{d.code} ({d.zh})" for d in self.departments)
        )

    def label(self, code: str | None) -> str | None:
        """Chinese name of a category or department code (the code itself when unknown)."""
        if code is None:
            return None
        for x in (*self.categories, *self.departments):
            if x.code == code:
                return x.zh
        return code

    def public(self) -> dict:
        return {
            "categories": [c.model_dump() for c in self.categories],
            "departments": [d.model_dump() for d in self.departments],
        }


def parse_catalog(text: str, source: str = "catalog") -> Catalog:
    try:
        return Catalog.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError, TypeError) as exc:
        raise CatalogError(f"事件目录无效 invalid event catalog {source}: {exc}") from exc


@lru_cache(maxsize=4)
def _load(path: str) -> Catalog:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"事件目录无法读取 event catalog unreadable: {p} ({exc.strerror})") from exc
    return parse_catalog(text, str(p))


def load_catalog(path: str | Path | None = None) -> Catalog:
    return _load(str(path or os.environ.get(ENV) or DEFAULT_PATH))


load_catalog.cache_clear = _load.cache_clear  # type: ignore[attr-defined]
