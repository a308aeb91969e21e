"""Communities of the sample city made deliberately hard to grid (网格划分难点), verified.

The generator plans a *stranded* compound (see :mod:`gisgov.sample.layout`): in an old-town
community of work-unit compounds (单位大院) that are each one grid on their own, one compound is
just below the 300-household minimum and every neighbour would push a shared grid above 500
households or 1,000 people. Here the plan is checked the way `gisgov grids feasibility` checks a
loaded community (same territories, units and rules), and only what really holds is reported, so
``gisgov_meta.dataset.grid_challenges`` never promises an explanation the planner will not show.
Pure computation on the generated frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

from gisgov.gridding import feasibility
from gisgov.gridding.context import build_context
from gisgov.gridding.rules import URBAN
from gisgov.gridding.units import build_units

REASON_TEXT = {
    "stranded": (
        "夹心小区：户数不足300户，与任一相邻小区合并都会超过500户或1000人，整小区划分无解 "
        "a compound below 300 households whose every neighbour would push a shared grid above "
        "500 households or 1,000 people: no plan keeps every compound whole"
    ),
}


def verify_grid_challenges(
    planned: dict[str, str], communities, compounds, buildings, households: pd.DataFrame, residents: pd.DataFrame
) -> list[dict]:
    """``planned`` maps a community code to the compound planned as stranded. Frames are the
    city's lon/lat layers. Returns one entry per plan that holds under the default urban rules."""
    out = []
    if not planned:
        return out
    people = residents.groupby(residents["household_code"].str.slice(0, 17)).size()
    for code, compound_code in planned.items():
        com = communities[communities["code"] == code]
        if com.empty:
            continue
        units, feas = _check(
            com.iloc[0],
            compounds[compounds["community_code"] == code],
            buildings[buildings["community_code"] == code],
            people,
        )
        hits = [f for f in feas.findings if f.rule == "stranded" and units.code[f.units[0]] == compound_code]
        if not hits:
            continue
        f = hits[0]
        cp = compounds.set_index("code").loc[compound_code]
        out.append(
            dict(
                community_code=code,
                name=str(com["name"].iloc[0]),
                reason="stranded",
                reason_text=REASON_TEXT["stranded"],
                compound_code=compound_code,
                compound_name=str(cp["name"]),
                households=int(f.data["households"]),
                people=int(f.data["people"]),
                neighbours=[str(units.code[u]) for u in f.units[1:]],
                findings=[{"rule": x.rule, "message": x.message} for x in feas.findings],
                rule=f"whole compounds cannot form grids of {URBAN.min_households}–{URBAN.max_households} households "
                f"and ≤ {URBAN.max_people} people; the closest plan splits a compound",
            )
        )
    return out


def _check(community, compounds, buildings, people: pd.Series):
    b = pd.DataFrame(
        {
            "id": np.arange(1, len(buildings) + 1),
            "code": buildings["code"].to_numpy(),
            "households": buildings["households"].to_numpy(np.int64),
            "people": buildings["code"].map(people).fillna(0).astype(np.int64).to_numpy(),
        }
    )
    cid = {c: i + 1 for i, c in enumerate(compounds["code"])}
    b["compound_id"] = pd.array(buildings["compound_code"].map(cid).to_numpy(), dtype="Int64")
    pos = shapely.point_on_surface(np.asarray(buildings.geometry))
    b["lon"], b["lat"] = shapely.get_x(pos), shapely.get_y(pos)
    comp = pd.DataFrame(
        {
            "id": np.arange(1, len(compounds) + 1),
            "code": compounds["code"].to_numpy(),
            "name": compounds["name"].to_numpy(),
            "geometry": np.asarray(compounds.geometry),
        }
    )
    ctx = build_context(
        code=community["code"],
        name=community["name"],
        boundary_lonlat=community.geometry,
        buildings=b,
        compounds=comp,
        rules=URBAN,
    )
    units = build_units(ctx.atoms, ctx.compounds, ctx.graph, ctx.rules)
    return units, feasibility.check(
        units.graph,
        units.households,
        units.people,
        ctx.rules,
        codes=units.code,
        people_estimated=units.people_estimated,
    )
