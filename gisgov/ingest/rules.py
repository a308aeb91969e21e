"""The import rules: one id per rule, with the message a planner reads (Chinese first)."""

from __future__ import annotations

RULES: dict[str, str] = {
    "geom_empty": "几何为空或缺失 geometry empty or missing",
    "ring_not_closed": "多边形环未闭合 polygon ring not closed",
    "geom_type": "几何类型不符 wrong geometry type for this level",
    "geom_invalid": "几何无效 invalid geometry",
    "axis_swapped": "经纬度颠倒 longitude/latitude swapped",
    "outside_region": "坐标超出配置区域 coordinates outside the configured region",
    "code_format": "编码格式错误 code malformed",
    "code_missing": "缺少编码 code missing",
    "code_duplicate": "编码在文件中重复 code duplicated in the file",
    "code_exists": "编码已存在于数据库 code already in the database",
    "sibling_overlap": "与同级记录重叠 overlaps another record of the same level",
    "parent_gap": "上级范围内有空隙 part of the parent is covered by none of its children",
    "child_outside": "更新后下级记录落在范围外 after the update a child record lies outside it",
    "updated": "已更新（旧版本已存档） updated (the previous version is kept in the history)",
    "parent_mismatch": "上级编码与编码前缀不一致 parent code disagrees with the code prefix",
    "parent_unknown": "上级编码不存在 unknown parent code",
    "outside_parent": "不在上级范围内 lies outside its parent",
    "no_parent": "找不到包含它的上级 no parent contains it",
    "required": "必填字段为空 required field empty",
    "value_invalid": "字段值无效 value invalid",
    "category_unknown": "设施类别未知 unknown facility category",
    "compound_unknown": "小区编码不存在 unknown compound code",
    "grid_unknown": "网格编码不存在 unknown grid code",
    "building_unknown": "楼栋不存在 unknown building",
    "address_unknown": "地址找不到楼栋 no building has this address",
    "address_ambiguous": "地址对应多个楼栋 address matches several buildings",
    "door_no": "户号无效 household (door) number invalid",
    "id_number": "身份证号无效 ID number invalid (GB 11643)",
    "id_duplicate": "身份证号在文件中重复 ID number duplicated in the file",
    "id_exists": "身份证号已存在于数据库 ID number already in the database",
    "phone": "电话号码无效 phone number invalid",
    "group_unknown": "特殊人群类别未知 unknown special group",
    "database": "数据库拒绝 the database refused the record",
    "out_of_scope": "超出本账号的管辖范围 outside the area this account may change (rule: out_of_scope)",
    "code_assigned": "已自动编码 code assigned",
}


def msg(rule: str, detail: str | None = None) -> str:
    base = RULES[rule]
    return f"{base}: {detail}" if detail else base
