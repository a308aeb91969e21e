"""The declarative catalog of map layers: ``layers/layer-<name>.yaml``, each a ``layer:`` mapping.

Each layer names its table, the columns it exposes, its style, the smallest zoom worth showing
it at and the least role allowed to see it. ``/api/layers/{level}``, ``/api/{level}/{code}`` and
``/map`` are driven by it: a level in a URL is only ever looked up here, and every SQL identifier
comes from a validated catalog entry, never from the request.

Roles, least to most trusted: public 公众 < grid_worker 网格员 < community 社区 < street 街道 <
admin 管理员 (an account's role maps to one of these through
:attr:`gisgov.security.roles.Principal.catalog_level`). Columns holding ID numbers or phone numbers
can never be exposed.

Personal data: a layer on a table holding people (``household``, ``resident``, ``resident_group``,
``grid_staff``) must say ``personal: true``; it then also needs the ``read_personal`` permission
(planners and viewers see aggregates only), every read of it is audited, and it is scoped to the
account's own node (a grid worker's grid), not to the wider area of outlines.

Scope (``scope_by``): how the rows of a layer are limited to the caller's area (see
:mod:`gisgov.api.queries`): ``code`` (a hierarchy code: in the area or an ancestor of it),
``community_code`` (the row's community; rows without one by position), ``area`` (geometry
intersects the area's polygon), ``household`` (personal rows, by their household's building) or
``all`` (public infrastructure every signed-in account sees whole, e.g. the walking network).

Vector tiles (``tiles:``, optional): a layer with this section is served as Mapbox vector tiles at
``/tiles/{layer}/{z}/{x}/{y}.pbf`` (see :mod:`gisgov.tiles`); a layer without it is not. Each feature
carries ``code`` and ``name``, ``households``/``residents`` for a layer with ``counts``, the code of
each level in ``links`` (a property named after the level, e.g. ``grid`` on buildings) and the
``fields`` picked from the layer's own ``properties``. Personal layers are never tiled.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from gisgov.errors import GisgovError, InvalidInput, NotFound
from gisgov.security.roles import Perm, Principal

ROLES: tuple[str, ...] = ("public", "grid_worker", "community", "street", "admin")
ROLE_LABELS = {"public": "公众", "grid_worker": "网格员", "community": "社区", "street": "街道", "admin": "管理员"}
Role = Literal["public", "grid_worker", "community", "street", "admin"]

# Never exposed by any layer, whatever the role (protected personal identifiers).
FORBIDDEN_COLUMNS = frozenset({"id_hash", "id_cipher", "id_last4", "phone_cipher", "phone_masked"})
# Property names every feature carries; a layer's own columns may not reuse them.
META_PROPERTIES = ("layer", "code", "name", "parent_code", "households", "residents")
# Tables holding people, their households, staff: layers on them must be ``personal``.
PERSONAL_TABLES = frozenset({"household", "resident", "resident_group", "grid_staff"})
# First path segments of /api that belong to other routes: no layer may take them as its name.
RESERVED_NAMES = frozenset({"layers", "hierarchy", "health", "docs", "openapi", "static", "map"})

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
Rollup = Literal["street", "community", "grid", "compound", "building"]
ScopeRule = Literal["code", "community_code", "area", "household", "all"]


class LayerForbidden(GisgovError):
    status_code = 403


class UnknownLayer(NotFound):
    pass


class Title(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zh: str
    en: str

    def __str__(self) -> str:
        return f"{self.zh} {self.en}"


class Ref(BaseModel):
    """A link from this layer's ``column`` to another layer (its ``code`` or its ``id``)."""

    model_config = ConfigDict(extra="forbid")
    level: Ident
    column: Ident
    key: Literal["code", "id"] = "code"


class Style(BaseModel):
    """Leaflet path options (snake_case here, camelCase in :meth:`leaflet`)."""

    model_config = ConfigDict(extra="forbid")
    color: str = "#3388ff"
    weight: float = 2
    opacity: float = 1.0
    fill: bool = True
    fill_color: str | None = None
    fill_opacity: float = 0.2
    dash_array: str | None = None
    radius: float | None = None  # point layers (circle markers)

    def leaflet(self) -> dict:
        d = {
            "color": self.color,
            "weight": self.weight,
            "opacity": self.opacity,
            "fill": self.fill,
            "fillColor": self.fill_color or self.color,
            "fillOpacity": self.fill_opacity if self.fill else 0,
        }
        if self.dash_array:
            d["dashArray"] = self.dash_array
        if self.radius is not None:
            d["radius"] = self.radius
        return d


class Tiles(BaseModel):
    """How a layer is served as vector tiles (every key has a default: ``tiles: {}`` is enough)."""

    model_config = ConfigDict(extra="forbid")
    fields: list[Ident] = Field(default_factory=list, description="extra properties, from the layer's properties")
    links: list[Ident] = Field(default_factory=list, description="levels whose code is a property (building: grid)")
    counts: bool = Field(default=True, description="households/residents, for a layer with counts")
    min_zoom: int | None = Field(
        default=None, ge=0, le=22, description="below it tiles are empty (default: the layer's)"
    )
    max_zoom: int = Field(default=22, ge=0, le=22, description="above it tiles are empty")
    simplify: float = Field(default=0.5, ge=0, le=16, description="simplification tolerance in screen pixels (0: none)")
    buffer: int = Field(default=64, ge=0, le=1024, description="pixels of the 4096 extent drawn beyond the tile edge")
    extent: int = Field(default=4096, ge=256, le=8192)
    max_features: int = Field(default=5000, ge=1, le=100_000, description="features per tile at most (by code)")

    @model_validator(mode="after")
    def _zooms(self) -> Tiles:
        if self.min_zoom is not None and self.min_zoom > self.max_zoom:
            raise ValueError(f"tiles.min_zoom {self.min_zoom} is above tiles.max_zoom {self.max_zoom}")
        return self


class Layer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Ident
    title: Title
    table: Ident
    id_column: Ident = "id"
    code_column: Ident | None = "code"
    code_pattern: str = Field(description="regex a code in /api/{level}/{code} must match")
    name_column: Ident | None = "name"
    geometry: Ident = "geom"
    geometry_fallback: Ident | None = None
    geometry_kind: Literal["polygon", "line", "point"]
    parent: Ref | None = None
    links: list[Ref] = Field(default_factory=list)
    counts: Rollup | None = None
    properties: list[Ident] = Field(default_factory=list)
    style: Style = Field(default_factory=Style)
    min_zoom: int = Field(default=0, ge=0, le=22)
    min_role: Role = "public"
    personal: bool = False
    scope_by: ScopeRule = "code"
    on_map: bool = False
    order: int = 100
    description: str = ""
    tiles: Tiles | None = None

    @field_validator("code_pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"code_pattern is not a valid regex: {exc}") from exc
        if not (v.startswith("^") and v.endswith("$")):
            raise ValueError("code_pattern must be anchored (^…$)")
        return v

    @model_validator(mode="after")
    def _safe(self) -> Layer:
        if self.name in RESERVED_NAMES:
            raise ValueError(f"layer name {self.name!r} is reserved by another route")
        cols = {
            self.id_column,
            self.code_column,
            self.name_column,
            self.geometry,
            self.geometry_fallback,
            *self.properties,
            *(r.column for r in self.refs),
        }
        bad = sorted(c for c in cols if c in FORBIDDEN_COLUMNS)
        if bad:
            raise ValueError(f"layer {self.name} exposes protected personal columns {bad} (rule: never_expose_ids)")
        clash = sorted(set(self.properties) & set(META_PROPERTIES))
        if clash:
            raise ValueError(f"layer {self.name} property names {clash} clash with the common ones {META_PROPERTIES}")
        if self.scope_by == "code" and self.code_column is None:
            raise ValueError(
                f"layer {self.name} has no code column: scope_by must be community_code, area, "
                "household or all (rule: layer_scope)"
            )
        if self.table in PERSONAL_TABLES and not self.personal:
            raise ValueError(
                f"layer {self.name} reads personal table {self.table}: it must be personal: true (rule: personal_layer)"
            )
        if self.personal and self.scope_by != "household":
            raise ValueError(f"personal layer {self.name} must be scoped by household (rule: personal_layer)")
        if self.personal and self.name_column is not None:
            raise ValueError(f"personal layer {self.name} may not show names (rule: personal_layer)")
        if self.tiles is not None:
            if self.personal:
                raise ValueError(f"personal layer {self.name} may not be served as tiles (rule: personal_layer)")
            extra = sorted(set(self.tiles.fields) - set(self.properties))
            if extra:
                raise ValueError(f"layer {self.name}: tiles.fields {extra} are not among its properties")
            levels = {r.level for r in self.refs}
            unknown = sorted(set(self.tiles.links) - levels)
            if unknown:
                raise ValueError(f"layer {self.name}: tiles.links {unknown} are not levels it refers to")
            clash = sorted(set(self.tiles.links) & set(self.tiles.fields))
            if clash:
                raise ValueError(f"layer {self.name}: tiles.links and tiles.fields share names {clash}")
        return self

    @property
    def tile_min_zoom(self) -> int:
        """Smallest zoom with features in this layer's tiles."""
        return self.min_zoom if self.tiles is None or self.tiles.min_zoom is None else self.tiles.min_zoom

    @property
    def refs(self) -> list[Ref]:
        return ([self.parent] if self.parent else []) + list(self.links)

    @property
    def code_expr_column(self) -> str:
        """Column used as the feature's code (the id when the table has no code)."""
        return self.code_column or self.id_column

    def check_code(self, code: str) -> str:
        if not re.fullmatch(self.code_pattern, code):
            raise InvalidInput(
                f"编码格式错误 invalid {self.name} code {code!r} (rule: {self.name} code must match {self.code_pattern})"
            )
        return code

    def visible_to(self, role: str) -> bool:
        return role_rank(role) >= role_rank(self.min_role)

    def allowed(self, p: Principal) -> bool:
        """May this account see the layer: its catalog level reaches ``min_role`` and, for a
        personal layer, it holds ``read_personal``."""
        return self.visible_to(p.catalog_level) and (not self.personal or p.can(Perm.read_personal))


def role_rank(role: str) -> int:
    try:
        return ROLES.index(role)
    except ValueError as exc:
        raise InvalidInput(f"未知角色 unknown role {role!r} (known: {', '.join(ROLES)})") from exc


class Catalog:
    """The layers of one catalog folder, in display order."""

    def __init__(self, layers: list[Layer], source: Path | None = None):
        self.source = source
        names = [lyr.name for lyr in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidInput(f"图层名称重复 layer catalog {source}: duplicate layer names {dup}")
        self.layers: dict[str, Layer] = {lyr.name: lyr for lyr in sorted(layers, key=lambda x: (x.order, x.name))}
        for lyr in self.layers.values():
            for ref in lyr.refs:
                if ref.level not in self.layers:
                    raise InvalidInput(
                        f"引用了不存在的图层 layer catalog {source}: layer {lyr.name} refers to unknown layer {ref.level}"
                    )

    def __iter__(self):
        return iter(self.layers.values())

    def __contains__(self, name: str) -> bool:
        return name in self.layers

    def get(self, name: str) -> Layer:
        try:
            return self.layers[name]
        except KeyError:
            raise UnknownLayer(f"未知图层 unknown layer {name!r} (known: {', '.join(self.layers)})") from None

    def for_principal(self, name: str, p: Principal) -> Layer:
        """The layer, or :class:`LayerForbidden` (403) when the account may not see it."""
        lyr = self.get(name)
        if not lyr.visible_to(p.catalog_level):  # named by the account's role, not the catalog level it maps to
            raise LayerForbidden(
                f"无权查看 layer {name} requires role {lyr.min_role} ({ROLE_LABELS[lyr.min_role]}) or above; "
                f"your role: {p.role.value} ({p.label})"
            )
        if lyr.personal and not p.can(Perm.read_personal):
            raise LayerForbidden(
                f"无权查看个人信息图层 layer {name} holds personal data: needs permission {Perm.read_personal.value}; "
                f"role {p.role.value} ({p.label}) sees aggregates only"
            )
        return lyr

    def visible(self, role: str) -> list[Layer]:
        return [lyr for lyr in self if lyr.visible_to(role)]

    def visible_for(self, p: Principal) -> list[Layer]:
        """The layers an account may see, in display order."""
        return [lyr for lyr in self if lyr.allowed(p)]

    def children_refs(self, level: str) -> list[tuple[Layer, Ref, bool]]:
        """(layer, ref, is_primary_parent) for every layer pointing at ``level``."""
        out = []
        for lyr in self:
            for ref in lyr.refs:
                if ref.level == level:
                    out.append((lyr, ref, ref is lyr.parent))
        return out


def parse_layer_file(path: Path) -> Layer:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"图层文件无法解析 layer file {path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or "layer" not in raw:
        raise InvalidInput(f"图层文件缺少顶层键 layer file {path}: expected a mapping with a 'layer:' key")
    try:
        return Layer.model_validate(raw["layer"])
    except ValidationError as exc:
        raise InvalidInput(f"图层文件内容有误 layer file {path}: {exc}") from exc


PATTERN = "layer-*.yaml"


def load_catalog(folder: Path) -> Catalog:
    """Parse every ``layer-*.yaml`` in ``folder`` (the folder's other catalogs are not map layers)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"图层目录不存在 layer catalog folder not found: {folder} (setting GISGOV_LAYERS_DIR)")
    layers = [parse_layer_file(path) for path in sorted(folder.glob(PATTERN))]
    if not layers:
        raise InvalidInput(f"图层目录中没有图层文件 layer catalog {folder} holds no layer files")
    return Catalog(layers, folder)


@lru_cache(maxsize=8)
def _cached(folder: str, stamp: tuple) -> Catalog:
    return load_catalog(Path(folder))


def catalog(folder: Path) -> Catalog:
    """Cached :func:`load_catalog`, re-read when a file in the folder changes."""
    folder = Path(folder)
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob(PATTERN))) if folder.is_dir() else ()
    return _cached(str(folder), stamp)
