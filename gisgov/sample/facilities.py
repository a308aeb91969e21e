"""Service facilities of the 16 categories (便民服务 16 类), placed beside roads, with planned gaps.

Tiers follow GB 50180-2018 life circles: each community gets its 5/10-minute facilities (health
station, kindergarten, shops …), each street its 15-minute ones (health centre, junior school,
police station …), the city a few hospitals and a media centre. A few named communities are left
deliberately under-served: they get none of some categories, and no facility of those categories
is placed within ``SERVICE_RADIUS_M`` (+ a margin) of walking from any of their buildings. The
communities across the river (only two bridges) are the natural candidates, plus the old-town
corner community that lacks sports and culture space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from gisgov.sample import names as nm
from gisgov.sample.layout import RIVER_ROW, CityPlan
from gisgov.sample.roads import Network

SERVICE_RADIUS_M = 1000.0  # 15-minute walk (GB 50180-2018: 800–1000 m)
_MARGIN_M = 100.0
_OFFSET_M = 9.0  # facilities stand beside the road, not on its centreline
SOURCE = "gisgov sample（合成 synthetic）"

# (category code, kind, count per unit: int, or (lo, hi) range, or probability < 1)
COMMUNITY_TIER = [
    ("dangjian", "党群服务中心", 1),
    ("dangjian", "党群服务驿站", (1, 2)),
    ("zongzhi", "网格服务站", 1),
    ("minzheng", "居家养老服务站", 1),
    ("minzheng", "日间照料中心", 0.5),
    ("gongan", "警务室", 1),
    ("sifa", "人民调解室", 1),
    ("weisheng", "社区卫生服务站", 1),
    ("renshe", "就业服务站", 0.6),
    ("chengguan", "公共厕所", (1, 2)),
    ("chengguan", "垃圾分类站", 1),
    ("canlian", "残疾人康复站", 0.5),
    ("shichangjianguan", "食品安全快检室", 0.3),
    ("wenhua", "文化活动室", 1),
    ("tiyu", "健身点", (1, 3)),
    ("xinwenmeiti", "报刊亭", 0.5),
    ("xuexiao", "幼儿园", (1, 2)),
    ("shangye", "便利店", (2, 5)),
    ("shangye", "菜市场", 1),
    ("shangye", "药店", (1, 2)),
]
STREET_TIER = [
    ("dangjian", "街道党群服务中心", 1),
    ("zongzhi", "综治中心", 1),
    ("minzheng", "养老院", 1),
    ("gongan", "派出所", 1),
    ("sifa", "司法所", 1),
    ("weisheng", "社区卫生服务中心", 1),
    ("renshe", "人社服务中心", 1),
    ("chengguan", "城管执法中队", 1),
    ("canlian", "残疾人之家", 1),
    ("shichangjianguan", "市场监管所", 1),
    ("wenhua", "综合文化站", 1),
    ("tiyu", "体育公园", 1),
    ("xuexiao", "小学", "half"),
    ("xuexiao", "初中", 1),
    ("shangye", "超市", "half"),
    ("shangye", "银行网点", "half"),
]
CITY_TIER = [
    ("yiyuan", "综合医院", "示例城第一人民医院"),
    ("yiyuan", "综合医院", "示例城第二人民医院"),
    ("yiyuan", "中医院", "示例城中医院"),
    ("tiyu", "体育场", "示例城体育中心"),
    ("xinwenmeiti", "融媒体中心", "示例城融媒体中心"),
]
CATEGORY_ZH = {
    "dangjian": "党建",
    "zongzhi": "综治",
    "minzheng": "民政(养老)",
    "gongan": "公安",
    "sifa": "司法",
    "weisheng": "卫生",
    "renshe": "人社",
    "chengguan": "城管",
    "canlian": "残联",
    "shichangjianguan": "市场监管",
    "wenhua": "文化",
    "tiyu": "体育",
    "xinwenmeiti": "新闻媒体",
    "xuexiao": "学校",
    "yiyuan": "医院",
    "shangye": "商业服务",
}
REASON_TEXT = {
    "river": "隔河，仅两座桥 across the river, reached over two bridges only",
    "oldtown": "老城区，缺少活动场地 dense old town without room for sports and culture",
}
MISSING = {
    "river": ("weisheng", "yiyuan", "tiyu", "minzheng"),  # across the river: no health, sports, elderly care
    "oldtown": ("tiyu", "wenhua"),  # dense old town: no sports or culture space
}


def graph(net: Network):
    n = len(net.nodes)
    e = net.edges
    return coo_matrix(
        (e["length_m"].to_numpy(), (e["source"].to_numpy() - 1, e["target"].to_numpy() - 1)), shape=(n, n)
    ).tocsr()


def nearest_node(net: Network, xy: np.ndarray) -> np.ndarray:
    """0-based index of the network node nearest to each point."""
    return cKDTree(net.nodes).query(np.asarray(xy).reshape(-1, 2))[1]


def choose_under_served(plan: CityPlan) -> dict[str, tuple[str, tuple[str, ...]]]:
    """community code -> (reason, missing categories)."""
    com = plan.communities
    nx = com["col"].max() + 1
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    south = com[com["row"] < RIVER_ROW].copy()
    cx = (south["x0"] + south["x1"]) / 2
    south["d"] = np.min(np.abs(cx.to_numpy()[:, None] - np.array(plan.bridges_x)[None, :]), axis=1)
    south = south.sort_values(["d", "col"], ascending=[False, False], kind="stable")
    for code in south["code"].head(2 if nx >= 3 else 1):
        out[code] = ("river", MISSING["river"])
    if len(com) >= 9:
        nw = com[(com["row"] == com["row"].max()) & (com["col"] == 0)]["code"].iloc[0]
        out[nw] = ("oldtown", MISSING["oldtown"])
    return out


CHILD_HOME_SEED = 20261130


def place_facilities(rng: np.random.Generator, plan: CityPlan, net: Network) -> tuple[pd.DataFrame, list[dict]]:
    """Facilities (code, name, category_code, kind, community_code, address, source, x, y) and the
    verified under-served list [{community_code, name, reason, missing, rule}]."""
    g = graph(net)
    com = plan.communities.reset_index(drop=True)
    b = plan.buildings
    b_node = nearest_node(net, np.column_stack([(b["x0"] + b["x1"]) / 2, (b["y0"] + b["y1"]) / 2]))
    under = choose_under_served(plan)

    # nodes where a facility of a category must not go (too close to an under-served community)
    forbidden: dict[str, np.ndarray] = {}
    for cat in sorted({c for _, miss in under.values() for c in miss}):
        src = np.unique(b_node[b["community_code"].isin([k for k, (_, m) in under.items() if cat in m]).to_numpy()])
        d = dijkstra(g, directed=False, indices=src, min_only=True, limit=SERVICE_RADIUS_M + _MARGIN_M)
        forbidden[cat] = np.isfinite(d)

    road = net.edges[net.edges["class"].isin(["arterial", "local"])]
    road_nodes = np.unique(np.concatenate([road["source"], road["target"]])) - 1
    road_name = pd.concat(
        [
            road[["source", "name"]].rename(columns={"source": "n"}),
            road[["target", "name"]].rename(columns={"target": "n"}),
        ]
    ).drop_duplicates("n")
    road_name = dict(zip(road_name["n"] - 1, road_name["name"], strict=False))
    xy = net.nodes[road_nodes]
    cand = {
        c.code: road_nodes[(xy[:, 0] >= c.x0) & (xy[:, 0] <= c.x1) & (xy[:, 1] >= c.y0) & (xy[:, 1] <= c.y1)]
        for c in com.itertuples()
    }
    used: dict[str, set[int]] = {c: set() for c in cand}
    rows: list[dict] = []

    def put(cat: str, kind: str, host: str, name: str, force: bool = False) -> bool:
        nodes = cand[host]
        ok = nodes if (force or cat not in forbidden) else nodes[~forbidden[cat][nodes]]
        if len(ok) == 0:
            return False
        fresh = np.array([n for n in ok if n not in used[host]])
        pool = fresh if len(fresh) else ok
        n = int(pool[rng.integers(len(pool))])
        used[host].add(n)
        c = com.set_index("code").loc[host]
        x, y = net.nodes[n]
        sx = 1.0 if (c.x0 + c.x1) / 2 >= x else -1.0
        sy = 1.0 if (c.y0 + c.y1) / 2 >= y else -1.0
        rows.append(
            dict(
                name=name,
                category_code=cat,
                kind=kind,
                community_code=host,
                address=f"{road_name.get(n, '')}{int(rng.integers(1, 300))}号",
                x=round(x + sx * _OFFSET_M, 2),
                y=round(y + sy * _OFFSET_M, 2),
            )
        )
        return True

    def hosts(pool: pd.DataFrame, cat: str) -> list[str]:
        order = list(pool["code"].to_numpy()[rng.permutation(len(pool))])
        return [h for h in order if not (h in under and cat in under[h][1])]

    for i, (cat, kind, label) in enumerate(CITY_TIER):
        # alternate between the streets; fall back to anywhere, then to ignoring the planned gaps
        pref = com[com["street_code"] == plan.streets["code"].iloc[i % len(plan.streets)]]
        if not any(put(cat, kind, h, label) for h in hosts(pref, cat) + hosts(com, cat)):
            put(cat, kind, hosts(com, "")[0], label, force=True) or _no_place(label)
    for st in plan.streets.itertuples():
        scom = com[com["street_code"] == st.code]
        short = st.name.replace("（合成）", "")
        for cat, kind, count in STREET_TIER:
            n = int(np.ceil(len(scom) / 2)) if count == "half" else count
            for i in range(n):
                label = f"{short}{kind}" + (f"（{nm.cn(i + 1)}）" if n > 1 else "")
                if not any(put(cat, kind, h, label) for h in hosts(scom, cat)):
                    any(put(cat, kind, h, label) for h in hosts(com, cat))
    for c in com.itertuples():
        missing = under.get(c.code, ("", ()))[1]
        for cat, kind, count in COMMUNITY_TIER:
            if cat in missing:
                continue
            if isinstance(count, tuple):
                n = int(rng.integers(count[0], count[1] + 1))
            elif isinstance(count, float):
                n = int(rng.random() < count)
            else:
                n = count
            for i in range(n):
                put(cat, kind, c.code, f"{c.short}{kind}" + (f"（{i + 1}）" if n > 1 else ""))

    # every category must exist at least once (a tiny city may have no room left outside the gaps)
    present = {r["category_code"] for r in rows}
    for cat, kind, _ in COMMUNITY_TIER + STREET_TIER:
        if cat not in present:
            put(cat, kind, hosts(com, "")[0], kind, force=True)
            present.add(cat)

    # 儿童之家 (children's homes, 民政) in about half of the communities, from a random stream of their own
    # so that everything drawn above (and the rest of the sample city after this function) stays as it was
    rng = np.random.default_rng(CHILD_HOME_SEED)
    for c in com.itertuples():
        if rng.random() < 0.5:
            put("minzheng", "儿童之家", c.code, f"{c.short}儿童之家")

    f = pd.DataFrame(rows)
    f["code"] = f["community_code"] + "F" + (f.groupby("community_code").cumcount() + 1).map("{:03d}".format)
    f["source"] = SOURCE
    f = f[["code", "name", "category_code", "kind", "community_code", "address", "source", "x", "y"]]
    return f, verify_under_served(plan, net, f, under, b_node)


def _no_place(label: str):  # pragma: no cover - the city always has road nodes
    raise ValueError(f"no place for facility {label} (rule: sample_facilities)")


def verify_under_served(plan: CityPlan, net: Network, f: pd.DataFrame, under: dict, b_node: np.ndarray) -> list[dict]:
    """Keep the (community, category) gaps that really hold: walking distance from every building of
    the community to the nearest facility of the category exceeds SERVICE_RADIUS_M."""
    g = graph(net)
    f_node = nearest_node(net, f[["x", "y"]].to_numpy())
    com = plan.communities.set_index("code")
    out = []
    for code, (reason, missing) in under.items():
        mine = np.unique(b_node[(plan.buildings["community_code"] == code).to_numpy()])
        held = []
        for cat in missing:
            src = np.unique(f_node[(f["category_code"] == cat).to_numpy()])
            d = dijkstra(g, directed=False, indices=src, min_only=True) if len(src) else np.full(len(net.nodes), np.inf)
            if float(d[mine].min()) > SERVICE_RADIUS_M:
                held.append(cat)
        if held:
            out.append(
                dict(
                    community_code=code,
                    name=com.loc[code, "name"],
                    reason=reason,
                    reason_text=REASON_TEXT[reason],
                    missing=held,
                    missing_zh=[CATEGORY_ZH[c] for c in held],
                    rule=f"no facility of these categories within {SERVICE_RADIUS_M:.0f} m walk "
                    "of any building of the community",
                )
            )
    return out
