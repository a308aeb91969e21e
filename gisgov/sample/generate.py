"""`generate_city`: the deterministic synthetic sample city (示例城, 合成数据 synthetic data).

Pure: a seed and a scale in, a :class:`SampleCity` of GeoDataFrames (EPSG:4490, lon/lat) and
DataFrames out; no files, no database. The plan is laid out in metres in the CGCS2000 3-degree
Gauss-Krüger zone of the place (EPSG:4548, CM 117°E, near Hefei) and transformed once at the end.
At scale 1.0: 2 streets, 12 communities, ~210 compounds, ~2,350 buildings, ~63,000 households,
~165,000 residents. Everything is made up and labelled synthetic (合成); `meta["grid_challenges"]`
lists the community made deliberately hard to grid, verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gisgov.crs import CGCS2000, metric_epsg, transformer
from gisgov.sample import layout
from gisgov.sample.challenges import verify_grid_challenges
from gisgov.sample.facilities import SERVICE_RADIUS_M, place_facilities
from gisgov.sample.layout import COUNTY, REFERENCE_YEAR, CityPlan, plan_city
from gisgov.sample.people import make_people
from gisgov.sample.roads import Network, build_network

DEFAULT_SEED = 20241123
CENTER = (117.25, 31.85)  # lon, lat: near Hefei (合肥); the city is synthetic
GENERATOR = "gisgov sample"
GENERATOR_VERSION = 1
DATASET_NAME = "示例城 Sample City（合成示例 synthetic）"
NOTE = (
    "合成数据，非真实人口信息；如有雷同纯属巧合。"
    "Synthetic data, not real people or places; any likeness is coincidental."
)

LAYERS = (
    "streets",
    "communities",
    "compounds",
    "buildings",
    "households",
    "residents",
    "resident_groups",
    "facilities",
    "road_nodes",
    "road_edges",
    "compound_gates",
    "barriers",
)


@dataclass
class SampleCity:
    streets: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    compounds: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    households: pd.DataFrame
    residents: pd.DataFrame
    resident_groups: pd.DataFrame
    facilities: gpd.GeoDataFrame
    road_nodes: gpd.GeoDataFrame
    road_edges: gpd.GeoDataFrame
    compound_gates: gpd.GeoDataFrame
    barriers: gpd.GeoDataFrame
    meta: dict = field(default_factory=dict)

    def layers(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}

    def counts(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.layers().items()}


def generate_city(
    seed: int = DEFAULT_SEED, scale: float = 1.0, on_stage: Callable[[str], None] | None = None
) -> SampleCity:
    """The sample city for a seed; the same seed and scale always give the same city."""
    if not (0.02 <= scale <= 5):
        raise ValueError(f"scale must be between 0.02 and 5 (got {scale}) (rule: sample_scale)")
    step = on_stage or (lambda _s: None)
    rng = np.random.default_rng(seed)
    step("layout 布局")
    plan = plan_city(rng, scale)
    net = build_network(plan.lines)
    if net.components() != 1:  # pragma: no cover - a layout bug
        raise RuntimeError(f"sample network has {net.components()} components (rule: network_connected)")
    step("people 人口")
    old = plan.compounds.set_index("code")["old"]
    bld = plan.buildings.assign(old=plan.buildings["compound_code"].map(old).to_numpy())
    people = make_people(rng, bld)
    step("facilities 设施")
    fac, under = place_facilities(rng, plan, net)
    step("geometry 坐标转换")
    return _assemble(rng, seed, scale, plan, net, people, fac, under, step)


def _assemble(
    rng, seed, scale, plan: CityPlan, net: Network, people, fac: pd.DataFrame, under, step: Callable[[str], None]
) -> SampleCity:
    epsg = metric_epsg(*CENTER)
    e0, n0 = transformer(CGCS2000, epsg).transform(*CENTER)
    ox, oy = e0 - plan.X[-1] / 2, n0 - plan.Y[-1] / 2
    to_ll = transformer(epsg, CGCS2000)

    def ll(geoms: np.ndarray) -> np.ndarray:
        def f(c: np.ndarray) -> np.ndarray:
            lon, lat = to_ll.transform(c[:, 0] + ox, c[:, 1] + oy)
            return np.column_stack([lon, lat])

        return shapely.transform(geoms, f)

    def gdf(df: pd.DataFrame, geoms: np.ndarray) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(df.reset_index(drop=True), geometry=ll(geoms), crs=CGCS2000)

    def rects(df: pd.DataFrame) -> np.ndarray:
        boxes = shapely.box(df["x0"], df["y0"], df["x1"], df["y1"], ccw=False)
        return shapely.multipolygons(np.asarray(boxes).reshape(-1, 1))

    X, Y = plan.X, plan.Y
    # streets: rings through every grid vertex on their boundary, so the communities tile them exactly
    st_geoms = []
    for s in plan.streets.itertuples():
        xs = X[s.col0 : s.col1 + 1]
        ring = (
            [(x, Y[0]) for x in xs]
            + [(xs[-1], y) for y in Y[1:]]
            + [(x, Y[-1]) for x in xs[::-1][1:]]
            + [(xs[0], y) for y in Y[::-1][1:]]
        )
        st_geoms.append(shapely.MultiPolygon([shapely.Polygon(ring)]))
    streets = gdf(plan.streets[["code", "name"]], np.array(st_geoms))

    hh = people.households
    b = plan.buildings.copy()
    b["households"] = b["code"].map(hh.groupby("building_code").size()).fillna(0).astype(np.int64)
    cp = plan.compounds.copy()
    cp["households"] = cp["code"].map(b.groupby("compound_code")["households"].sum()).fillna(0).astype(np.int64)
    cp["buildings"] = cp["code"].map(b.groupby("compound_code").size()).fillna(0).astype(np.int64)
    n = len(cp)
    mode_old = rng.choice(["物业公司", "业主自治", "社区兜底"], size=n, p=[0.35, 0.25, 0.40])
    mode_new = rng.choice(["物业公司", "业主自治"], size=n, p=[0.92, 0.08])
    cp["property_mode"] = np.where(cp["old"], mode_old, mode_new).astype(object)
    cp["has_party_org"] = rng.random(n) < np.where(cp["households"] >= 200, 0.92, 0.2)
    cp["is_old"] = cp["old"].astype(bool)
    cp["building_type"] = cp["btype"].map({k: v["label"] for k, v in layout.BUILDING_TYPES.items()})
    c_year = b["compound_code"].map(cp.set_index("code")["year_built"]).to_numpy()
    b_year = c_year + rng.integers(0, 3, size=len(b))
    b["year_built"] = np.where(c_year < 2000, np.minimum(b_year, 1999), np.minimum(b_year, REFERENCE_YEAR - 1))

    com = plan.communities.copy()
    old_share = com["code"].map(cp.groupby("community_code")["is_old"].mean()).fillna(0)
    com_hh = com["code"].map(cp.groupby("community_code")["households"].sum()).fillna(0)
    com["kind"] = np.select(
        [com["class"] == "撤村建居", com_hh > 9000, old_share >= 0.75, old_share <= 0.25],
        ["有出租无托管商品楼盘型", "超大规模型", "老旧小区型", "纯商品房型"],
        "混合居住型",
    ).astype(object)
    com["rule_set"] = "urban"
    communities = gdf(com[["code", "street_code", "name", "class", "kind", "rule_set"]], rects(com))
    compounds = gdf(
        cp[
            [
                "code",
                "community_code",
                "name",
                "year_built",
                "is_old",
                "property_mode",
                "has_party_org",
                "households",
                "buildings",
                "building_type",
            ]
        ],
        rects(cp),
    )
    buildings = gdf(
        b[
            [
                "code",
                "community_code",
                "compound_code",
                "name",
                "address",
                "floors",
                "units",
                "households",
                "year_built",
                "type_label",
            ]
        ].rename(columns={"type_label": "building_type"}),
        rects(b),
    )

    households = hh.reset_index(drop=True)
    residents = people.residents.reset_index(drop=True)
    groups = people.groups.reset_index(drop=True)

    facilities = gdf(fac.drop(columns=["x", "y"]), shapely.points(fac["x"], fac["y"]))
    nodes = gdf(pd.DataFrame({"id": np.arange(1, len(net.nodes) + 1)}), shapely.points(net.nodes))
    e = net.edges
    edges = gdf(
        e[["source", "target", "class", "name", "length_m"]],
        shapely.linestrings(np.stack([e[["x0", "y0"]].to_numpy(), e[["x1", "y1"]].to_numpy()], axis=1)),
    )
    gates = plan.gates.copy()
    gates["node_id"] = net.node_id(gates[["x", "y"]].to_numpy())
    compound_gates = gdf(gates[["compound_code", "node_id", "name"]], shapely.points(gates["x"], gates["y"]))
    bank = layout.RIVER_HALF
    yr = Y[layout.RIVER_ROW]
    xs = np.linspace(X[0] - 300, X[-1] + 300, 12)
    river = shapely.Polygon(
        np.concatenate(
            [
                np.column_stack([xs, np.full(len(xs), yr - bank)]),
                np.column_stack([xs[::-1], np.full(len(xs), yr + bank)]),
            ]
        )
    )
    barriers = gdf(pd.DataFrame({"kind": ["river"], "name": ["示例河（合成）"]}), np.array([river]))

    city = SampleCity(
        streets=streets,
        communities=communities,
        compounds=compounds,
        buildings=buildings,
        households=households,
        residents=residents,
        resident_groups=groups,
        facilities=facilities,
        road_nodes=nodes,
        road_edges=edges,
        compound_gates=compound_gates,
        barriers=barriers,
    )
    step("grid check 网格难点核验")
    planned = {r.community_code: r.code for r in cp.itertuples() if r.challenge == "stranded"}
    challenges = verify_grid_challenges(planned, communities, compounds, buildings, households, residents)
    city.meta = {
        "name": DATASET_NAME,
        "synthetic": True,
        "note": NOTE,
        "seed": int(seed),
        "scale": float(scale),
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "reference_date": f"{REFERENCE_YEAR}-11-23",
        "county_code": COUNTY,
        "center_lonlat": list(CENTER),
        "bbox_lonlat": [round(float(v), 6) for v in streets.total_bounds],
        "srid": CGCS2000,
        "metric_srid": epsg,
        "service_radius_m": SERVICE_RADIUS_M,
        "under_served": under,
        "grid_challenges": challenges,
        "counts": city.counts(),
    }
    return city
