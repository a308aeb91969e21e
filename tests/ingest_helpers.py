"""Helpers shared by the ingest/export/OSM tests: real files made on the fly, database snapshots."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import box
from sqlalchemy import Engine, text

TABLES = (
    "street",
    "community",
    "grid",
    "compound",
    "building",
    "household",
    "resident",
    "resident_group",
    "facility",
    "road_node",
    "road_edge",
)

# A small street near 117.2°E 31.8°N (Hefei), CGCS2000 lon/lat.
STREET = "340104001"
COMM_A, COMM_B = "340104001001", "340104001002"
STREET_BOX = (117.20, 31.80, 117.24, 31.83)
COMM_A_BOX = (117.20, 31.80, 117.22, 31.83)
COMM_B_BOX = (117.22, 31.80, 117.24, 31.83)


def snapshot(engine: Engine) -> dict[str, tuple[int, str | None]]:
    """Row count and content digest of every hierarchy table: equal snapshots = nothing changed."""
    out = {}
    with engine.connect() as c:
        for t in TABLES:
            out[t] = tuple(
                c.execute(text(f"SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x")).one()
            )
    return out


def gdf(rows: list[dict], crs="EPSG:4490") -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)


def write_streets(tmp: Path) -> Path:
    p = tmp / "街道.geojson"
    gdf([{"街道编码": STREET, "街道名称": "示范街道", "geometry": box(*STREET_BOX)}]).to_file(p, driver="GeoJSON")
    return p


def write_gbk_communities(tmp: Path, *, cpg: bool) -> Path:
    """A Shapefile whose DBF is GBK-encoded (as surveying offices send them), with or without .cpg."""
    d = tmp / ("with_cpg" if cpg else "no_cpg")
    d.mkdir(exist_ok=True)
    p = d / "社区.shp"
    g = gdf(
        [
            {"SQBM": COMM_A, "名称": "东园社区", "类别": "城市社区", "geometry": box(*COMM_A_BOX)},
            {"SQBM": COMM_B, "名称": "西湖社区", "类别": "撤村建居", "geometry": box(*COMM_B_BOX)},
        ]
    )
    g.to_file(p, driver="ESRI Shapefile", encoding="GBK")
    cpg_path = p.with_suffix(".cpg")
    if not cpg:
        cpg_path.unlink(missing_ok=True)
        dbf = p.with_suffix(".dbf")
        b = bytearray(dbf.read_bytes())
        b[29] = 0  # no language driver id either: the reader must sniff the bytes
        dbf.write_bytes(bytes(b))
    else:
        cpg_path.write_text("GBK")
    return p


def load_city(engine: Engine, tmp: Path) -> None:
    """Street + two communities through the real loader."""
    from gisgov.ingest.loader import load_file

    r1 = load_file(write_streets(tmp), "street", engine=engine)
    assert r1.status == "loaded", [i.line() for i in r1.issues]
    r2 = load_file(write_gbk_communities(tmp, cpg=True), "community", engine=engine)
    assert r2.status == "loaded", [i.line() for i in r2.issues]


def bowtie(x0, y0, d) -> shapely.Polygon:
    return shapely.Polygon([(x0, y0), (x0 + d, y0 + d), (x0 + d, y0), (x0, y0 + d), (x0, y0)])
