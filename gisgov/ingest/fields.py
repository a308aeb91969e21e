"""Find each canonical field among an incoming file's columns (Chinese aliases, ``--map``)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml

from gisgov.config import get_settings

# Canonical fields each level reads (besides geometry); resident rosters have their own list.
RESIDENT_FIELDS = (
    "building_code",
    "address",
    "door_no",
    "name",
    "gender",
    "birth_year",
    "role",
    "id_number",
    "phone",
    "groups",
    "residence",
)


# Built-in aliases tried after the aliases file's own: pinyin initials (首字母) as surveying offices and
# grid systems name DBF columns (10-byte names), and common variants. ``layers/field_aliases.yaml`` can
# add more; ``--map`` always wins.
BUILTIN_ALIASES: dict = {
    "levels": {
        "street": {
            "code": ["jdbm", "jddm", "jdbh", "xzbm", "xzdm", "街道编号", "乡镇编号", "街道(乡镇)编码"],
            "name": ["jdmc", "xzmc", "街道名", "乡镇", "乡镇街道", "街道(乡镇)名称", "街道乡镇名称"],
        },
        "community": {
            "code": ["sqbm", "sqdm", "sqbh", "cjbm", "cbm", "社区编号", "村编码", "村居代码", "社区(村)编码"],
            "name": ["sqmc", "cjmc", "cmc", "社区名", "村名", "村居", "社区(村)名称", "村(社区)名称"],
        },
        "grid": {
            "code": ["wgbm", "wgdm", "wgbh", "网格号"],
            "name": ["wgmc", "网格名"],
        },
        "compound": {
            "code": ["xqbm", "xqdm", "xqbh", "小区编号"],
            "name": ["xqmc", "小区名", "小区名字"],
        },
        "building": {
            "code": ["ldbm", "lddm", "ldbh", "jzbm", "楼栋编号", "楼栋代码", "建筑物编码"],
            "name": ["ldmc", "jzmc", "lh", "楼栋名", "楼栋号", "建筑物名称"],
        },
        "facility": {
            "code": ["ssbm", "ssdm", "ssbh", "设施编号"],
            "name": ["ssmc", "jgmc", "设施名", "机构名"],
            "category": ["sslb", "fwlb", "设施分类", "设施种类"],
        },
        "resident": {
            "name": ["xm", "居民名"],
            "address": ["zz", "jtzz", "家庭住址", "现住址", "居住地址"],
        },
    },
    "common": {
        "street_code": ["jdbm", "jddm", "xzbm", "所属街道编码", "街道(乡镇)编码"],
        "community_code": ["sqbm", "sqdm", "cjbm", "所属社区编码", "社区(村)编码"],
        "compound_code": ["xqbm", "xqdm", "所属小区编码"],
        "grid_code": ["wgbm", "wgdm", "所属网格编码"],
        "building_code": ["ldbm", "lddm", "楼栋编号", "所属楼栋编码"],
        "address": ["dz", "xxdz", "详址", "门牌"],
        "floors": ["lc", "zcs", "楼层", "层高数"],
        "units": ["dys", "单元"],
        "households": ["hs", "zhs", "户数(户)"],
        "year_built": ["jcnd", "jcsj", "建成年"],
        "door_no": ["hh", "mph", "fh", "户编号", "门牌号码", "房间号"],
        "gender": ["xb"],
        "birth_year": ["csnf", "出生年月", "出生日期"],
        "role": ["yhzgx", "与户主的关系"],
        "id_number": ["sfzh", "sfzhm", "身份证", "证件号"],
        "phone": ["lxdh", "sjhm", "dh", "手机号码", "电话号码"],
        "groups": ["tsrq", "人群类别"],
        "residence": ["jzlx", "居住状态", "人户状态"],
    },
}


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", str(s)).strip().lower()


_LOOSE_DROP = re.compile(r"[\s_\-.·:：]+")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")


def _loose(s: str) -> str:
    """A second, looser key: no spaces/underscores/dashes, no bracketed notes (``社区(村)编码`` →
    ``社区编码``, ``WG_BM`` → ``wgbm``), no leading 所属 (``所属街道编码`` → ``街道编码``)."""
    k = _LOOSE_DROP.sub("", _norm(s))
    k = _BRACKETS.sub("", k) or k
    return k[2:] if k.startswith("所属") and len(k) > 2 else k


@lru_cache(maxsize=4)
def load_aliases(path: str | None = None) -> dict:
    p = Path(path) if path else get_settings().layers_dir / "field_aliases.yaml"
    with open(p, encoding="utf-8") as f:
        return yaml.safe_load(f)


def aliases_for(level: str, field: str, table: dict | None = None) -> list[str]:
    """Level-specific aliases (the file's, then built-in), then common ones (the file's, then built-in)."""
    t = table or load_aliases()
    b = BUILTIN_ALIASES
    own = (t.get("levels", {}).get(level) or {}).get(field, [])
    builtin_own = (b["levels"].get(level) or {}).get(field, [])
    common = (t.get("common") or {}).get(field, [])
    return [*own, *builtin_own, *common, *b["common"].get(field, [])]


def parse_map(items: list[str] | None) -> dict[str, str]:
    """``["name=小区名", "code=XQBM"]`` → ``{"name": "小区名", "code": "XQBM"}``."""
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--map expects field=column, got {it!r}")
        k, v = it.split("=", 1)
        if not k.strip() or not v.strip():
            raise ValueError(f"--map expects field=column, got {it!r}")
        out[k.strip()] = v.strip()
    return out


def resolve(
    columns: list[str],
    level: str,
    fields: tuple[str, ...],
    overrides: dict[str, str] | None = None,
    table: dict | None = None,
) -> dict[str, str]:
    """``{canonical field: column}`` for the fields found; ``--map`` overrides win.

    Raises ValueError for an override naming an unknown field or a column the file lacks.
    """
    overrides = overrides or {}
    by_norm: dict[str, str] = {}
    by_loose: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(_norm(c), c)
        by_loose.setdefault(_loose(c), c)
    out: dict[str, str] = {}
    for f, col in overrides.items():
        if f not in fields:
            raise ValueError(f"--map {f}={col}: unknown field {f!r} for level {level}; fields: {', '.join(fields)}")
        if _norm(col) not in by_norm:
            raise ValueError(
                f"--map {f}={col}: the file has no column {col!r}; columns: {', '.join(map(str, columns))}"
            )
        out[f] = by_norm[_norm(col)]
    used = set(out.values())
    for f in fields:
        if f in out:
            continue
        names = aliases_for(level, f, table)
        for key, index in ((_norm, by_norm), (_loose, by_loose)):  # exact names first, then loose ones
            c = next((index[key(a)] for a in names if key(a) in index and index[key(a)] not in used), None)
            if c is not None:
                out[f] = c
                used.add(c)
                break
    return out
