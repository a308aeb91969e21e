"""Label and convert incoming coordinates to the storage CRS (settings ``srid``, lon/lat order).

Accepted source CRS: any EPSG code pyproj knows — in practice EPSG:4490 (CGCS2000), 4326 (WGS84),
the projected CGCS2000 Gauss-Krüger zones 4491–4554 — plus ``gcj02`` (AMap/Tencent) and ``bd09``
(Baidu), converted through :mod:`gisgov.ingest.gcj02` to WGS84 first.

Xi'an 1980 and Beijing 1954 (EPSG:4610, 4214, 4555 and their Gauss-Krüger projections 2327–2442,
21413–21483 …) are refused unless the transformation is given: there is no public 7-parameter set
between them and CGCS2000/WGS84, and PROJ's fallback is a "ballpark" offset that moves nothing (errors
of tens to over a hundred metres). Surveying offices hold local parameters; they are passed as
``EPSG:2385 +towgs84=dx,dy,dz,rx,ry,rz,ds`` (PROJ's position-vector convention: metres, arc-seconds,
ppm; to WGS84, which CGCS2000 matches within centimetres), as a PROJ string or WKT carrying them, or
as a PROJ pipeline whose output is CGCS2000 lon/lat in degrees.

Axis order: EPSG:4490 and 4326 are latitude-first *by definition*, but GDAL (and so pyogrio) hands
coordinates over in the traditional GIS order (x = lon, y = lat), and every transformer here is
built with ``always_xy=True``. Coordinates that still arrive swapped (a file that wrote lat,lon
into x,y) are caught by the region check in :mod:`gisgov.ingest.validate`. Coordinates far outside
lon/lat ranges read as lon/lat are refused: they are projected metres whose CRS was not given
(:func:`projected_hint` names the likely Gauss-Krüger zones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer

from gisgov.crs import CGCS2000, WGS84, transformer
from gisgov.errors import InvalidInput
from gisgov.ingest import gcj02

_CHINA_OFFSETS = {
    "gcj02": "GCJ-02",
    "gcj-02": "GCJ-02",
    "amap": "GCJ-02",
    "tencent": "GCJ-02",
    "bd09": "BD-09",
    "bd-09": "BD-09",
    "baidu": "BD-09",
}


@dataclass(frozen=True)
class SourceCRS:
    """Where coordinates come from: an EPSG code, an offset system (GCJ-02 / BD-09), or a definition
    (WKT / PROJ string with explicit datum parameters, or a PROJ pipeline to CGCS2000 lon/lat)."""

    epsg: int | None = None
    offset: str | None = None  # "GCJ-02" | "BD-09"
    definition: str | None = None
    name: str | None = None  # shown in reports for a definition

    @property
    def label(self) -> str:
        if self.definition is not None:
            return self.name or "custom CRS"
        return self.offset or f"EPSG:{self.epsg}"

    @property
    def is_pipeline(self) -> bool:
        return self.definition is not None and "proj=pipeline" in self.definition.replace(" ", "")

    @property
    def is_geographic(self) -> bool:
        if self.offset is not None:
            return True
        if self.definition is not None:
            return not self.is_pipeline and CRS.from_user_input(self.definition).is_geographic
        return CRS.from_epsg(self.epsg).is_geographic


class CRSNeedsParameters(ValueError):
    """Xi'an 1980 / Beijing 1954 data without the datum transformation: refused, not shifted roughly."""

    rule = "crs_needs_parameters"


# Datums for which no public transformation to CGCS2000/WGS84 exists (PROJ falls back to a null shift).
_LEGACY_DATUMS = {
    "Xian 1980": "西安80 Xi'an 1980",
    "Beijing 1954": "北京54 Beijing 1954",
    "New Beijing": "新北京54 New Beijing",
}
_TOWGS84 = re.compile(r"^\s*(?:epsg:)?(\d+)\s*\+?towgs84\s*=\s*([-+0-9.eE,\s]+)$", re.IGNORECASE)


# A custom definition on their ellipsoids (Krassowsky 1940; IAG 1975 = IAU 1976) is taken for them too.
_LEGACY_ELLIPSOIDS = {
    "Krassowsky 1940": "Beijing 1954",
    "Krassovsky, 1942": "Beijing 1954",
    "IAG 1975": "Xian 1980",
    "IAU 1976": "Xian 1980",
}


def _legacy_datum(crs: CRS) -> str | None:
    """The legacy datum ``crs`` is on (Xi'an 1980, Beijing 1954, New Beijing), else None."""
    geod = crs.geodetic_crs
    if geod is None:
        return None
    found = _LEGACY_DATUMS.get(geod.datum.name) if geod.datum is not None else None
    if found is None and geod.ellipsoid is not None:
        by_ellipsoid = _LEGACY_ELLIPSOIDS.get(geod.ellipsoid.name)
        found = _LEGACY_DATUMS[by_ellipsoid] if by_ellipsoid else None
    return found


def _needs_parameters(crs: CRS, code: int | None) -> CRSNeedsParameters:
    datum = _legacy_datum(crs) or "?"
    label = f"EPSG:{code} ({crs.name})" if code else crs.name
    example = code or 2385
    return CRSNeedsParameters(
        f"西安80、北京54坐标须提供七参数 {label} is on the {datum.split(' ', 1)[1]} datum (rule: crs_needs_parameters): "
        "there is no public 7-parameter transformation between it and CGCS2000/WGS84, and a rough shift is off by "
        "tens to over a hundred metres, so gisgov does not guess one. Ask the surveying office (测绘或自然资源部门) "
        "for the local parameters and pass them with the CRS: "
        f'--crs "EPSG:{example} +towgs84=dx,dy,dz,rx,ry,rz,ds" (PROJ position-vector convention: metres, '
        "arc-seconds, ppm; to WGS84/CGCS2000), or a PROJ string / WKT carrying TOWGS84, or "
        '--crs "+proj=pipeline …" ending in CGCS2000 lon/lat degrees; or convert the data to CGCS2000 first'
    )


def _with_towgs84(code: int, params: str) -> SourceCRS:
    from pyproj.crs import BoundCRS
    from pyproj.crs.coordinate_operation import ToWGS84Transformation

    try:
        values = [float(v) for v in params.replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if len(values) not in (3, 7):
        raise ValueError(
            f"+towgs84 需要3或7个参数 +towgs84 expects 3 or 7 numbers (dx,dy,dz[,rx,ry,rz,ds]), got {params!r}"
        )
    if not any(values):
        raise _needs_parameters(CRS.from_epsg(code), code)  # all zeros is the rough shift itself
    base = _crs_of(code)
    bound = BoundCRS(
        source_crs=base,
        target_crs="EPSG:4326",
        transformation=ToWGS84Transformation(base.geodetic_crs, *values),
    )
    return SourceCRS(definition=bound.to_wkt(), name=f"EPSG:{code} +towgs84={','.join(f'{v:g}' for v in values)}")


def parse_crs(spec: str | int | None) -> SourceCRS | None:
    """``4490``, ``EPSG:4549``, ``gcj02``, ``bd09``, ``EPSG:2385 +towgs84=…``, a PROJ string / WKT, a PROJ
    pipeline → :class:`SourceCRS` (None for None/empty). Xi'an 1980 / Beijing 1954 without parameters
    raise :class:`CRSNeedsParameters`."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, int):
        return _epsg(spec)
    s = spec.strip().lower()
    if s in _CHINA_OFFSETS:
        return SourceCRS(offset=_CHINA_OFFSETS[s])
    if s in ("wgs84", "wgs-84"):
        return SourceCRS(epsg=WGS84)
    if s in ("cgcs2000",):
        return SourceCRS(epsg=CGCS2000)
    m = _TOWGS84.match(spec.strip())
    if m:
        return _with_towgs84(int(m.group(1)), m.group(2))
    if "proj=pipeline" in s.replace(" ", ""):
        return _pipeline(spec.strip())
    if s.startswith("+proj") or "[" in s:
        return _definition(spec.strip())
    if s.startswith("epsg:"):
        s = s[5:]
    if not s.isdigit():
        raise ValueError(f"未知坐标系 unknown CRS {spec!r}: give an EPSG code (4490, 4326, 4513–4554 …), gcj02 or bd09")
    return _epsg(int(s))


def _crs_of(code: int) -> CRS:
    try:
        return CRS.from_epsg(code)
    except Exception:
        raise ValueError(f"未知坐标系 unknown CRS EPSG:{code}") from None


def _epsg(code: int) -> SourceCRS:
    c = _crs_of(code)
    if _legacy_datum(c):
        raise _needs_parameters(c, code)
    return SourceCRS(epsg=code)


def _bound_parameters(c: CRS) -> list[float] | None:
    """The TOWGS84 values of a bound CRS (None when it is not bound)."""
    if not c.is_bound:
        return None
    params = c.coordinate_operation.params if c.coordinate_operation is not None else []
    return [float(p.value) for p in params]


def _definition(spec: str) -> SourceCRS:
    """A PROJ string or WKT: Xi'an 1980 / Beijing 1954 only with non-zero TOWGS84 parameters."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            c = CRS.from_user_input(spec)
        except Exception as exc:
            raise ValueError(f"未知坐标系 unknown CRS definition {spec[:80]!r}: {exc}") from None
    base = c.source_crs if c.is_bound and c.source_crs is not None else c
    params = _bound_parameters(c)
    if _legacy_datum(base) and not (params and any(params)):
        raise _needs_parameters(base, base.to_epsg(min_confidence=70))
    if params is None:
        code = c.to_epsg(min_confidence=90)
        if code is not None:
            return _epsg(code)
    return SourceCRS(definition=c.to_wkt(), name=f"{base.name} (TOWGS84 given)" if params else c.name)


def _pipeline(spec: str) -> SourceCRS:
    from pyproj import Transformer

    try:
        Transformer.from_pipeline(spec)
    except Exception as exc:
        raise ValueError(f"无效的转换管道 invalid PROJ pipeline {spec[:80]!r}: {exc}") from None
    return SourceCRS(definition=spec, name="PROJ pipeline → CGCS2000")


def crs_from_file(crs) -> SourceCRS | None:
    """The CRS a reader reported (WKT/PROJJSON/'EPSG:x'), as a SourceCRS; None if unknown. Xi'an 1980 /
    Beijing 1954 without TOWGS84 parameters raise :class:`CRSNeedsParameters`."""
    if crs is None:
        return None
    c = CRS.from_user_input(crs)
    base = c.source_crs if c.is_bound and c.source_crs is not None else c
    if _legacy_datum(base):
        params = _bound_parameters(c)
        if params and any(params):
            return SourceCRS(definition=c.to_wkt(), name=f"{base.name} (TOWGS84 from the file)")
        raise _needs_parameters(base, base.to_epsg(min_confidence=70))
    code = c.to_epsg(min_confidence=70)
    if code is None:
        raise ValueError(f"文件坐标系无法识别 the file's CRS has no EPSG code ({c.name}); pass --crs EPSG")
    return SourceCRS(epsg=code)


# --- projected metres without a CRS ------------------------------------------------------------------


def _finite_bounds(geoms: np.ndarray) -> tuple[float, float, float, float] | None:
    b = shapely.bounds(np.asarray(geoms, dtype=object))
    if b.size == 0 or np.all(np.isnan(b)):
        return None
    return float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1])), float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3]))


# Beyond this no coordinate is a degree, even with lat/lon swapped (that is caught by the region check).
_NOT_DEGREES = 1000.0


def looks_projected(geoms: np.ndarray) -> bool:
    """True when coordinates lie far outside lon/lat ranges (beyond ±1000): projected metres."""
    b = _finite_bounds(geoms)
    if b is None:
        return False
    return max(abs(v) for v in b) > _NOT_DEGREES


def projected_hint(geoms: np.ndarray) -> str | None:
    """For coordinates that look like projected metres: a message naming the likely CRS (None otherwise).

    An easting of 8 digits carries the Gauss-Krüger zone in its leading two (39 512 345 m = zone 39):
    3-degree zones 25–45 are EPSG:4513–4533 (CGCS2000), 6-degree zones 13–23 EPSG:4491–4501. An easting
    within 0–1 000 000 m has no zone prefix: the central meridian must be chosen — CGCS2000 3-degree
    EPSG:4534–4554 (CM 75°E … 135°E), 6-degree EPSG:4502–4512, or WGS84 UTM 32643–32653."""
    b = _finite_bounds(geoms)
    if b is None or not looks_projected(geoms):
        return None
    x = (b[0] + b[2]) / 2
    y = (b[1] + b[3]) / 2
    zone = int(x // 1_000_000)
    shown = f"x≈{x:,.0f}, y≈{y:,.0f}"
    head = f"坐标像是投影坐标（米） coordinates look like projected metres ({shown}), not lon/lat (rule: crs_projected_metres)"
    if 25 <= zone <= 45 and b[0] // 1_000_000 == b[2] // 1_000_000:
        cm = zone * 3
        return (
            f"{head}: the easting's leading digits {zone} are a 3-degree Gauss-Krüger zone prefix (CM {cm}°E); "
            f"pass --crs EPSG:{4513 + zone - 25} (CGCS2000 / 3-degree Gauss-Kruger zone {zone}). If the data is "
            "Xi'an 80 or Beijing 54 (same zone layout), the datum parameters are needed as well"
        )
    if 13 <= zone <= 23 and b[0] // 1_000_000 == b[2] // 1_000_000:
        cm = zone * 6 - 3
        return (
            f"{head}: the easting's leading digits {zone} are a 6-degree Gauss-Krüger zone prefix (CM {cm}°E); "
            f"pass --crs EPSG:{4491 + zone - 13} (CGCS2000 / Gauss-Kruger zone {zone})"
        )
    if b[0] > 0 and b[2] < 1_000_000 and b[1] > 0 and b[3] < 10_000_000:
        return (
            f"{head}: the easting has no zone prefix, so the central meridian must be named: pass --crs with the "
            "CGCS2000 3-degree Gauss-Kruger CM zone of the area, EPSG:4534–4554 (CM 75°E … 135°E, e.g. EPSG:4548 "
            "for 117°E, EPSG:4549 for 120°E), or the 6-degree EPSG:4502–4512, or WGS84 UTM EPSG:32643–32653"
        )
    return f"{head}; pass --crs with the file's projected CRS (e.g. a CGCS2000 Gauss-Kruger zone, EPSG:4513–4554)"


class ProjectedWithoutCRS(InvalidInput):
    """Coordinates read as lon/lat are projected metres: the user must name the CRS."""

    rule = "crs_projected_metres"


def _xy_fn(src: SourceCRS, srid: int):
    if src.offset == "GCJ-02":
        first = gcj02.gcj02_to_wgs84
    elif src.offset == "BD-09":
        first = gcj02.bd09_to_wgs84
    else:
        first = None
    tr: Transformer | None
    if src.is_pipeline and src.definition is not None:
        pipe = Transformer.from_pipeline(src.definition)
        then = None if srid == CGCS2000 else transformer(CGCS2000, srid)

        def piped(xy: np.ndarray) -> np.ndarray:
            x, y = pipe.transform(xy[:, 0], xy[:, 1])
            if then is not None:
                x, y = then.transform(x, y)
            return np.column_stack([x, y])

        return piped
    # A definition with TOWGS84 goes through WGS84 on purpose: asked for the storage CRS directly, PROJ
    # prefers its own ballpark operation and the parameters would be ignored. CGCS2000 is taken equal to
    # WGS84 (they agree within centimetres).
    before = transformer(src.definition, WGS84) if src.definition is not None else None
    mid: int | None = WGS84 if (first is not None or before is not None) else src.epsg
    tr = None if mid == srid else transformer(mid, srid)

    def fn(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        if first is not None:
            x, y = first(x, y)
        if before is not None:
            x, y = before.transform(x, y)
        if tr is not None:
            x, y = tr.transform(x, y)
        return np.column_stack([x, y])

    return fn


def to_storage(geoms: np.ndarray, src: SourceCRS, srid: int) -> np.ndarray:
    """Geometries converted from ``src`` to lon/lat in ``srid`` (None stays None). Coordinates said to be
    lon/lat (a geographic CRS, assumed or given) that are far outside lon/lat ranges raise
    :class:`ProjectedWithoutCRS` naming the likely projected CRS; so does a conversion whose result is
    not lon/lat (a pipeline that does not end in degrees)."""
    geoms = np.asarray(geoms, dtype=object)
    if src.is_geographic:
        hint = projected_hint(geoms)
        if hint is not None:
            message = f"{hint} (read as {src.label})"  # the hint is "中文 English" already
            raise ProjectedWithoutCRS(message)
    if src.offset is None and src.definition is None and src.epsg == srid:
        return geoms
    out = shapely.transform(geoms, _xy_fn(src, srid))
    if src.is_pipeline and looks_projected(out):
        raise ProjectedWithoutCRS(
            "转换管道的结果不是经纬度 the PROJ pipeline's output is not lon/lat degrees (rule: crs_projected_metres); "
            "end it in CGCS2000 geographic coordinates (e.g. … +step +proj=unitconvert +xy_in=rad +xy_out=deg)"
        )
    return out
