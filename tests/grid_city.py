"""Hand-built gridding communities with known answers (lon/lat CGCS2000 near 117°E 31.8°N, laid out in
metres on the Gauss-Krüger zone EPSG:4548), as frames for ``build_context`` and as SQL rows for PostGIS."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text

from gisgov.crs import transformer
from gisgov.gridding.context import build_context
from gisgov.gridding.rules import GridRules

GK = 4548
X0, Y0 = 500_000.0, 3_520_000.0  # metres: ≈ 117.0°E, 31.8°N
STREET = "340104001"
COMMUNITY = "340104001001"


def lonlat(geom):
    t = transformer(GK, 4490)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0] + X0, xy[:, 1] + Y0)))


@dataclass
class Spec:
    """A community of ``width``×``height`` m; compounds (x0, y0, x1, y1, [(x, y, households, people)]);
    loose buildings (x, y, households, people)."""

    width: float
    height: float
    compounds: list = field(default_factory=list)
    loose: list = field(default_factory=list)
    rivers: list = field(default_factory=list)  # lines [(x, y), …]
    code: str = COMMUNITY
    boundary: object = None  # metric polygon (default: the rectangle)

    def frames(self):
        comp_rows, bld_rows = [], []
        n = 0
        for c, (x0, y0, x1, y1, blds) in enumerate(self.compounds, 1):
            comp_rows.append(
                {
                    "id": c,
                    "code": f"{self.code}{c:04d}",
                    "name": f"小区{c}",
                    "geometry": lonlat(shapely.box(x0, y0, x1, y1)),
                }
            )
            for x, y, hh, pp in blds:
                n += 1
                bld_rows.append(
                    {
                        "id": n,
                        "code": f"{self.code}{n:05d}",
                        "compound_id": c,
                        "households": hh,
                        "people": pp,
                        "x": x,
                        "y": y,
                    }
                )
        for x, y, hh, pp in self.loose:
            n += 1
            bld_rows.append(
                {
                    "id": n,
                    "code": f"{self.code}{n:05d}",
                    "compound_id": None,
                    "households": hh,
                    "people": pp,
                    "x": x,
                    "y": y,
                }
            )
        b = pd.DataFrame(bld_rows, columns=["id", "code", "compound_id", "households", "people", "x", "y"])
        if len(b):
            pts = lonlat(shapely.points(b[["x", "y"]].to_numpy(float)))
            b["lon"] = shapely.get_x(pts)
            b["lat"] = shapely.get_y(pts)
        else:
            b["lon"] = b["lat"] = []
        b["compound_id"] = b["compound_id"].astype("Int64")
        return b, pd.DataFrame(comp_rows, columns=["id", "code", "name", "geometry"])

    def boundary_metric(self):
        return self.boundary if self.boundary is not None else shapely.box(0, 0, self.width, self.height)

    def context(self, rules: GridRules | None = None):
        b, c = self.frames()
        return build_context(
            code=self.code,
            name="测试社区",
            boundary_lonlat=lonlat(self.boundary_metric()),
            buildings=b,
            compounds=c,
            barriers_lonlat=[lonlat(shapely.LineString(r)) for r in self.rivers],
            rules=rules or GridRules(),
        )

    def load(self, conn) -> None:
        """Insert street, community, compounds, buildings (households column, no roster) into PostGIS."""
        b, c = self.frames()
        bnd = lonlat(self.boundary_metric())
        street = shapely.buffer(bnd, 0.001)
        conn.execute(
            text(
                "INSERT INTO street (code, name, geom) VALUES (:c, '测试街道', ST_Multi(ST_GeomFromText(:g, 4490))) "
                "ON CONFLICT (code) DO NOTHING"
            ),
            {"c": self.code[:9], "g": street.wkt},
        )
        conn.execute(
            text(
                "INSERT INTO community (code, street_code, name, geom) VALUES (:c, :s, '测试社区', "
                "ST_Multi(ST_GeomFromText(:g, 4490)))"
            ),
            {"c": self.code, "s": self.code[:9], "g": bnd.wkt},
        )
        ids = {}
        for _, row in c.iterrows():
            ids[row["id"]] = conn.execute(
                text(
                    "INSERT INTO compound (code, community_code, name, geom) VALUES (:c, :k, :n, "
                    "ST_Multi(ST_GeomFromText(:g, 4490))) RETURNING id"
                ),
                {"c": row["code"], "k": self.code, "n": row["name"], "g": row["geometry"].wkt},
            ).scalar()
        for _, row in b.iterrows():
            cid = ids[int(row["compound_id"])] if pd.notna(row["compound_id"]) else None
            conn.execute(
                text(
                    "INSERT INTO building (code, community_code, compound_id, households, pos) VALUES "
                    "(:c, :k, :cid, :h, ST_SetSRID(ST_MakePoint(:x, :y), 4490))"
                ),
                {
                    "c": row["code"],
                    "k": self.code,
                    "cid": cid,
                    "h": int(row["households"]),
                    "x": row["lon"],
                    "y": row["lat"],
                },
            )
        for line in self.rivers:
            conn.execute(
                text("INSERT INTO barrier (kind, name, geom) VALUES ('river', '河', ST_GeomFromText(:g, 4490))"),
                {"g": lonlat(shapely.LineString(line)).wkt},
            )


def row_of_compounds(
    n: int, households: int, *, size: float = 100.0, gap: float = 20.0, people_per_hh: float = 2.0, buildings: int = 2
) -> Spec:
    """``n`` square compounds in a row, each with ``buildings`` buildings sharing ``households``."""
    comps = []
    for i in range(n):
        x0 = gap + i * (size + gap)
        blds = []
        for b in range(buildings):
            hh = households // buildings + (1 if b < households % buildings else 0)
            blds.append((x0 + size * (b + 1) / (buildings + 1), gap + size / 2, hh, int(round(hh * people_per_hh))))
        comps.append((x0, gap, x0 + size, gap + size, blds))
    return Spec(width=gap + n * (size + gap), height=size + 2 * gap, compounds=comps)


def block_layout(
    nx: int,
    ny: int,
    households: np.ndarray,
    *,
    size: float = 80.0,
    gap: float = 20.0,
    people_per_hh: np.ndarray | float = 2.0,
) -> Spec:
    """``nx``×``ny`` compounds of one building each (households per compound given)."""
    comps = []
    pph = np.broadcast_to(np.asarray(people_per_hh, dtype=float), (nx * ny,))
    for j in range(ny):
        for i in range(nx):
            k = j * nx + i
            x0, y0 = gap + i * (size + gap), gap + j * (size + gap)
            hh = int(households[k])
            comps.append((x0, y0, x0 + size, y0 + size, [(x0 + size / 2, y0 + size / 2, hh, int(round(hh * pph[k])))]))
    return Spec(width=gap + nx * (size + gap), height=gap + ny * (size + gap), compounds=comps)
