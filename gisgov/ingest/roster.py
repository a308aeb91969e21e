"""Resident rosters (居民名册): one row per resident, loaded with COPY in one transaction.

A row names its building (楼栋编码, or an address matching ``building.address``) and its household
number (户号 / 门牌号). Households are created as needed: household code = building code + the
4-digit household number (a door number of up to four digits is used as is, zero-padded; other
door numbers such as ``2单元301`` are numbered after the building's highest number and kept in
``household.door_no``). ID numbers are checked (GB 11643 check digit) and stored only as HMAC hash
+ AES-GCM ciphertext + last four characters; phones only as ciphertext + masked form.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gisgov.domain.idcard import ID_PATTERN, check_digits_ok
from gisgov.domain.idnumber import id_problem, normalize_id
from gisgov.ingest import estimates, store
from gisgov.ingest.fields import RESIDENT_FIELDS, parse_map, resolve
from gisgov.ingest.readers import ReadError, read_rows
from gisgov.ingest.report import INFO, REJECTED, Issue, Report, settle
from gisgov.ingest.rules import msg
from gisgov.ingest.uploads import UploadRejected
from gisgov.security.pii import Vault, mask_phone

TEMPLATE_HEADERS = [
    "楼栋编码",
    "地址",
    "户号",
    "姓名",
    "性别",
    "出生年份",
    "与户主关系",
    "身份证号",
    "联系电话",
    "特殊人群",
    "居住类型",
]
TEMPLATE_EXAMPLE = [
    "34010400100100001",
    "",
    "0101",
    "张三",
    "男",
    "1956",
    "户主",
    "11010519491231002X",
    "13800138000",
    "独居老人;低保",
    "常住",
]
TEMPLATE_NOTES = [
    (
        "楼栋编码",
        "17位楼栋编码；无编码时填写地址（须与楼栋地址一致） 17-digit building code, or the building's address",
    ),
    ("户号", "户号/门牌号；不超过4位数字时作为户编码后4位 household (door) number; ≤ 4 digits become the code suffix"),
    ("姓名", "必填 required"),
    ("性别", "男/女；可由身份证号推出 derived from the ID number when empty"),
    ("出生年份", "四位年份；可由身份证号推出 4-digit year; derived from the ID number when empty"),
    ("与户主关系", "户主/配偶/子女/父母/孙辈/兄弟姐妹/其他"),
    ("身份证号", "18位，校验位按 GB 11643 检查；只存密文、哈希和后四位 checked, stored encrypted + hashed + last 4"),
    ("联系电话", "只存密文和脱敏号码 stored encrypted + masked"),
    (
        "特殊人群",
        "多个用 ; 或 、 分隔，填名称或代码: 特困 低保 低边 残疾 独居老人 留守儿童 社区矫正 刑满释放 吸毒人员 "
        "精神障碍 重点信访 失业 优抚对象 困境儿童",
    ),
    ("居住类型", "常住/户籍/流动（默认常住）"),
]

_PHONE_RE = r"^\+?[\d\- ]{7,20}$"
_GENDER = {"男": "男", "女": "女", "m": "男", "f": "女", "male": "男", "female": "女", "1": "男", "2": "女"}
_ROLE = {
    "户主": "户主",
    "本人": "户主",
    "配偶": "配偶",
    "妻": "配偶",
    "妻子": "配偶",
    "丈夫": "配偶",
    "夫": "配偶",
    "子女": "子女",
    "子": "子女",
    "女": "子女",
    "儿子": "子女",
    "女儿": "子女",
    "长子": "子女",
    "长女": "子女",
    "次子": "子女",
    "次女": "子女",
    "父母": "父母",
    "父亲": "父母",
    "母亲": "父母",
    "父": "父母",
    "母": "父母",
    "孙辈": "孙辈",
    "孙子": "孙辈",
    "孙女": "孙辈",
    "外孙": "孙辈",
    "外孙女": "孙辈",
    "兄弟姐妹": "兄弟姐妹",
    "兄": "兄弟姐妹",
    "弟": "兄弟姐妹",
    "姐": "兄弟姐妹",
    "妹": "兄弟姐妹",
    "其他": "其他",
}
_RESIDENCE = {"常住": "常住", "户籍": "户籍", "流动": "流动", "": "常住"}
_SPLIT = re.compile(r"[;,，；、/|\s]+")


def ids_valid(ids: pd.Series) -> np.ndarray:
    """Vectorised GB 11643 check (format + check digit) of upper-cased 18-character strings."""
    s = ids.fillna("").astype(str)
    ok = s.str.len().eq(18).to_numpy() & s.str.match(ID_PATTERN).fillna(False).to_numpy()
    if ok.any():
        ok[np.flatnonzero(ok)] = check_digits_ok(s[ok].tolist())
    for i in np.flatnonzero(ok):  # birth date and region code (few distinct regions: cached)
        ok[i] = id_problem(s.iloc[i]) is None
    return ok


def _keep(s: pd.Series, mask) -> pd.Series:
    """Object Series with None where ``mask`` is False or the value is missing (pandas 3 safe)."""
    out = s.astype(object).copy()
    drop = ~np.asarray(mask, dtype=bool) | out.isna().to_numpy()
    out[drop] = None
    return out


def _s(df: pd.DataFrame, mapping: dict, f: str) -> pd.Series:
    if f not in mapping:
        return pd.Series([None] * len(df), dtype=object)
    return _keep(df[mapping[f]], np.ones(len(df), dtype=bool))


# A row that sums up the table (合计/总计 …) or signs it off (填表人 …): skipped with a note.
_TOTAL = re.compile(r"^(合计|总计|小计|共计|总数|累计|total|sum|subtotal)", re.IGNORECASE)
_FOOTER = re.compile(r"^(填表人|制表人|审核人|填报人|负责人|统计人|填表日期|制表日期|备注|说明|注[:：])")
_EXCEL_NUMBER = re.compile(r"^\d(\.\d+)?E\+?\d+$", re.IGNORECASE)
_HEADER_SCAN = 30


def _header_text(v) -> str:
    return "" if v is None else re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(v)))


def _cell_text(v: object) -> str | None:
    """A cell as text. A number Excel holds as a float of 15+ digits is written the way Excel shows it
    (``3.40104199001011E+17``): its last digits are gone and the roster check says so."""
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if abs(v) >= 1e15:
            return f"{v:.15G}"
        return str(int(v)) if v.is_integer() else repr(v)
    if hasattr(v, "year") and hasattr(v, "month"):  # a date cell: keep the date part
        return str(v)[:10]
    t = str(v).strip()
    return t or None


def _score(names: list[str], overrides: dict[str, str]) -> int:
    try:
        return len(resolve(names, "resident", RESIDENT_FIELDS, overrides))
    except ValueError:
        return len(resolve(names, "resident", RESIDENT_FIELDS))


def find_header(
    rows: list[tuple[int, list[object]]], header_row: int | None = None, overrides: dict[str, str] | None = None
) -> tuple[list[str], int, str]:
    """(column names, index in ``rows`` of the first data row, how the header was found).

    The header is the row (or pair of rows: a merged group title above the column names) among the first
    30 whose cells name the most roster fields; ``header_row`` (1-based, as the spreadsheet numbers rows)
    fixes it. Titles above it (居民花名册, 填报单位 …) are ignored."""
    ov = overrides or {}
    by_number = {n: k for k, (n, _) in enumerate(rows)}
    width = max((len(c) for _, c in rows[: _HEADER_SCAN + 2]), default=0)

    def cells(k: int) -> list[str]:
        c = rows[k][1] if 0 <= k < len(rows) else []
        return [_header_text(v) for v in c] + [""] * (width - len(c))

    def combo(k: int) -> list[str]:
        upper, lower = cells(k), cells(k + 1)
        return [lo or up for up, lo in zip(upper, lower, strict=True)]

    if header_row is not None:
        if header_row not in by_number:
            raise ValueError(f"--header-row {header_row}: the sheet has no row {header_row}")
        k = by_number[header_row]
        single, two = _score(cells(k), ov), _score(combo(k), ov) if k + 1 < len(rows) else -1
        if two > single:
            return combo(k), k + 2, f"header rows {header_row}–{header_row + 1} (given)"
        return cells(k), k + 1, f"header row {header_row} (given)"
    best = (0, 0, 0)  # (score, -k, rows used)
    for k in range(min(len(rows), _HEADER_SCAN)):
        s1 = _score(cells(k), ov)
        s2 = _score(combo(k), ov) if k + 1 < len(rows) else -1
        cand = (s1, -k, 1) if s1 >= s2 else (s2, -k, 2)
        if cand[0] > best[0]:
            best = cand
    score, neg_k, used = best
    k = -neg_k
    if score < 2:  # nothing looks like a roster header: the first row, as before
        return cells(0), 1, "header row 1"
    names = cells(k) if used == 1 else combo(k)
    n0 = rows[k][0]
    how = f"header row {n0}" if used == 1 else f"header rows {n0}–{n0 + 1} (merged)"
    return names, k + used, how + " (detected)"


def roster_table(
    rows: list[tuple[int, list[object]]], *, header_row: int | None = None, overrides: dict[str, str] | None = None
) -> tuple[pd.DataFrame, list[str], list[Issue], str]:
    """(columns as text, record labels "row N", notes on skipped rows, how the header was found) of a
    roster sheet: rows above the header are titles; blank rows and total/sign-off rows are skipped."""
    names, start, how = find_header(rows, header_row, overrides)
    keep = [j for j, h in enumerate(names) if h]
    cols: list[str] = []
    for j in keep:  # unique column names (a two-row header can repeat a sub-title)
        base, n = names[j], 2
        name = base
        while name in cols:
            name, n = f"{base}_{n}", n + 1
        cols.append(name)
    data: list[list[str | None]] = []
    records: list[str] = []
    blank: list[int] = []
    notes: list[Issue] = []
    for rowno, cells in rows[start:]:
        vals = [_cell_text(cells[j]) if j < len(cells) else None for j in keep]
        if all(v is None for v in vals):
            blank.append(rowno)
            continue
        first = [re.sub(r"\s+", "", unicodedata.normalize("NFKC", v)) for v in vals if v is not None][:3]
        if any(_TOTAL.match(v) for v in first) or (len(first) <= 2 and _FOOTER.match(first[0])):
            notes.append(
                Issue(
                    f"row {rowno}",
                    "row_skipped",
                    " ".join(first)[:40],
                    "已跳过合计/签名行 skipped a total or sign-off row (not a resident)",
                    INFO,
                )
            )
            continue
        data.append(vals)
        records.append(f"row {rowno}")
    last = int(records[-1].split()[1]) if records else 0
    inner = [b for b in blank if b < last]
    if inner:
        shown = ", ".join(map(str, inner[:10])) + (" …" if len(inner) > 10 else "")
        notes.append(
            Issue("(file)", "row_skipped", shown, f"已跳过 {len(inner)} 个空行 skipped {len(inner)} blank rows", INFO)
        )
    return pd.DataFrame(data, columns=cols, dtype=object), records, notes, how


def _nfkc(v: object) -> str | None:
    if v is None:
        return None
    t = unicodedata.normalize("NFKC", str(v)).strip()
    return t or None


def _nfkc_col(s: pd.Series) -> pd.Series:
    """NFKC of every value (full-width digits and letters → ASCII), None kept as None."""
    return pd.Series([_nfkc(v) for v in s.tolist()], dtype=object)


def _id_message(raw: str, clean: str) -> str:
    """What is wrong with an ID number, with Excel's number conversion named when it is the cause."""
    if _EXCEL_NUMBER.match(raw.strip()):
        return (
            f"身份证号被 Excel 当成数字保存（{raw.strip()}），只保留了15位有效数字，后几位已丢失 the ID number was "
            "turned into a number by Excel: only 15 significant digits are kept, the last digits are lost (an X "
            "check character cannot be kept either); format the column as text (文本) and enter the numbers again"
        )
    why = id_problem(clean) or ""
    if len(clean) == 18 and clean.endswith("000") and "校验位" in why:
        why += (
            "；末三位为000，可能被 Excel 当成数字截断 ends in 000: probably cut by Excel as a number; format the "
            "column as text (文本) and enter the number again"
        )
    return why


def parse_roster(df: pd.DataFrame, records: list[str], mapping: dict[str, str]) -> tuple[pd.DataFrame, list[Issue]]:
    """Row checks that need no database. Returns canonical columns + report lines (pure)."""
    n = len(df)
    issues: list[Issue] = []
    bad = np.zeros(n, dtype=bool)

    def add_many(mask, rule, values, detail):
        for i in np.flatnonzero(mask):
            d = detail(i) if callable(detail) else detail
            issues.append(Issue(records[i], rule, "" if values is None else str(values[i]), msg(rule, d), REJECTED))
        bad[mask] = True

    out = pd.DataFrame(index=range(n))
    name = _s(df, mapping, "name")
    add_many(name.isna().to_numpy(), "required", None, "姓名 name")
    out["name"] = name
    out["building_code"] = _nfkc_col(_s(df, mapping, "building_code"))
    out["address"] = _s(df, mapping, "address")
    nob = out["building_code"].isna().to_numpy() & out["address"].isna().to_numpy()
    add_many(nob, "required", None, "楼栋编码或地址 building code or address")
    bc = out["building_code"]
    badfmt = bc.notna().to_numpy() & ~bc.fillna("").str.fullmatch(r"\d{17}").to_numpy()
    add_many(badfmt, "building_unknown", bc.to_numpy(), "building code has 17 digits")
    door = _nfkc_col(_s(df, mapping, "door_no"))
    add_many(door.isna().to_numpy(), "door_no", door.to_numpy(), "户号 household number required")
    out["door_no"] = door
    # ID numbers
    id_raw = _s(df, mapping, "id_number")
    idn = pd.Series([None if v is None else (normalize_id(v) or None) for v in id_raw.tolist()], dtype=object)
    has_id = idn.notna().to_numpy()
    valid = ids_valid(idn)
    wrong = has_id & ~valid
    add_many(
        wrong,
        "id_number",
        idn.map(lambda v: _mask_id_value(v)).to_numpy(),
        lambda i: _id_message(str(id_raw.iloc[i]), idn.iloc[i]),
    )
    dup = has_id & valid & idn.duplicated(keep="first").to_numpy()
    if dup.any():
        first = {}
        for i, v in enumerate(idn.to_numpy()):
            if v is not None and v not in first:
                first[v] = i
        add_many(
            dup, "id_duplicate", idn.map(_mask_id_value).to_numpy(), lambda i: f"first at {records[first[idn.iloc[i]]]}"
        )
    out["id_number"] = _keep(idn, has_id & valid)
    # gender / birth year (derived from a valid ID when empty)
    g_raw = _nfkc_col(_s(df, mapping, "gender"))
    gender = g_raw.map(lambda v: None if v is None else _GENDER.get(str(v).strip().lower()))
    add_many((g_raw.notna() & gender.isna()).to_numpy(), "value_invalid", g_raw.to_numpy(), "性别 gender: 男/女")
    from_id = out["id_number"].notna()
    derived_g = out["id_number"].map(lambda v: None if v is None else ("男" if int(v[16]) % 2 else "女"))
    gender = _keep(gender, gender.notna().to_numpy())
    use = (gender.isna() & from_id).to_numpy()
    gender[use] = derived_g[use]
    out["gender"] = gender
    by_raw = _nfkc_col(_s(df, mapping, "birth_year"))
    by = pd.to_numeric(by_raw.map(lambda v: None if v is None else str(v)[:4]), errors="coerce")
    by_bad = (by_raw.notna() & (by.isna() | (by < 1880) | (by > 2100))).to_numpy()
    add_many(by_bad, "value_invalid", by_raw.to_numpy(), "出生年份 birth year 1880–2100")
    derived_by = pd.to_numeric(out["id_number"].map(lambda v: None if v is None else v[6:10]), errors="coerce")
    by = by.where(by.notna(), derived_by)
    out["birth_year"] = pd.array([None if pd.isna(v) else int(v) for v in by], dtype="Int64")
    role_raw = _nfkc_col(_s(df, mapping, "role"))
    role = role_raw.map(lambda v: None if v is None else _ROLE.get(str(v).strip()))
    add_many(
        (role_raw.notna() & role.isna()).to_numpy(),
        "value_invalid",
        role_raw.to_numpy(),
        "与户主关系 role: 户主/配偶/子女/父母/孙辈/兄弟姐妹/其他",
    )
    out["role"] = role
    phone = _nfkc_col(_s(df, mapping, "phone"))
    pbad = phone.notna().to_numpy() & ~phone.fillna("").str.match(_PHONE_RE).to_numpy()
    add_many(pbad, "phone", phone.map(mask_phone).to_numpy(), "7–20 digits")
    out["phone"] = _keep(phone, ~pbad)
    res_raw = _nfkc_col(_s(df, mapping, "residence"))
    res = res_raw.map(lambda v: _RESIDENCE.get("" if v is None else str(v).strip()))
    add_many(res.isna().to_numpy(), "value_invalid", res_raw.to_numpy(), "居住类型 residence: 常住/户籍/流动")
    out["residence"] = res.fillna("常住")
    out["groups_raw"] = _s(df, mapping, "groups")
    out["_bad"] = bad
    return out, issues


def _mask_id_value(v) -> str:
    if v is None:
        return ""
    v = str(v)
    return ("*" * max(0, len(v) - 4)) + v[-4:]


def _resolve_groups(raw: pd.Series, lookup: dict[str, str], records: list[str]) -> tuple[list, list[Issue]]:
    issues: list[Issue] = []
    out: list = [None] * len(raw)
    for i, v in enumerate(raw.to_numpy()):
        if v is None:
            continue
        codes = []
        for tok in _SPLIT.split(str(v).strip()):
            if not tok:
                continue
            c = lookup.get(tok.lower())
            if c is None:
                issues.append(
                    Issue(records[i], "group_unknown", tok, msg("group_unknown", "特困/低保/…/困境儿童 or their codes"))
                )
            elif c not in codes:
                codes.append(c)
        out[i] = codes or None
    return out, issues


def _households(
    b_codes: np.ndarray, doors: np.ndarray, existing: dict[tuple[str, str], str], top: dict[str, int]
) -> tuple[np.ndarray, list[Issue]]:
    """Household code per row (building code + 4-digit number)."""
    hh = np.empty(len(b_codes), dtype=object)
    assigned: dict[tuple[str, str], str] = dict(existing)
    # numeric door numbers first (they claim their own number)
    pairs = list(zip(b_codes, doors, strict=False))
    numeric = np.array([d is not None and d.isdigit() and len(d) <= 4 for d in doors])
    for i in np.flatnonzero(numeric):
        b, d = pairs[i]
        key = (b, d)
        code = assigned.get(key)
        if code is None:
            code = f"{b}{int(d):04d}"
            assigned[key] = code
            top[b] = max(top.get(b, 0), int(d))
        hh[i] = code
    for i in np.flatnonzero(~numeric):
        b, d = pairs[i]
        key = (b, d)
        code = assigned.get(key)
        if code is None:
            top[b] = top.get(b, 0) + 1
            code = f"{b}{top[b]:04d}"
            assigned[key] = code
        hh[i] = code
    return hh, []


def load_roster(
    path: str | Path,
    *,
    engine: Engine,
    mapping=None,
    dry_run: bool = False,
    encoding: str | None = None,
    sheet: str | None = None,
    progress=None,
    display_name: str | None = None,
    vault: Vault | None = None,
    area: str = "",
    header_row: int | None = None,
) -> Report:
    """Load a roster, all or nothing. ``header_row``: the spreadsheet row (1-based) holding the column
    names; by default it is found among the first 30 rows (title rows above it, a merged two-row header). ``area``: code prefix of the buildings the caller may change
    ('' = all); in addition, when the connection carries a database scope (``gisgov.scope``, set by
    the web app for the signed-in user), rows whose building lies outside it are rejected with rule
    ``out_of_scope`` before anything is written (row-level security would refuse them anyway)."""
    p = Path(path)
    name = display_name or p.name
    report = Report(name, "resident", dry_run=dry_run)
    if progress:
        progress("read", 0, 1)
    from gisgov.ingest.loader import UsageError

    try:
        cells, notes = read_rows(p, encoding=encoding, sheet=sheet, display_name=name)
    except (ReadError, UploadRejected) as exc:
        report.add("(file)", getattr(exc, "rule", "unreadable"), p.suffix, str(exc))
        report.status = "rejected"
        return report
    try:
        ov = mapping if isinstance(mapping, dict) else parse_map(mapping)
        df, records, skipped, how = roster_table(cells, header_row=header_row, overrides=ov)
        fmap = resolve(list(df.columns), "resident", RESIDENT_FIELDS, ov)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    for note in notes:
        report.add("(file)", "read", note, "读取 read", INFO)
    report.add("(file)", "header", how, "表头 header", INFO)
    report.extend(skipped)
    if not len(df):
        report.add(
            "(file)", "file_empty", how, f"{name}: 名册没有居民行 the roster has no resident rows; nothing to load"
        )
        report.status = "rejected"
        return report
    report.add(
        "(file)", "field_mapping", ", ".join(f"{f}←{c}" for f, c in fmap.items()), "字段对应 field mapping", INFO
    )
    if "name" not in fmap or ("building_code" not in fmap and "address" not in fmap) or "door_no" not in fmap:
        raise UsageError(
            f"{name}: a roster needs 姓名, 户号 and 楼栋编码 (or 地址) columns; found "
            f"{', '.join(map(str, df.columns))}. Get the template with `gisgov template residents`."
        )
    report.counts["read"] = len(df)
    if progress:
        progress("read", 1, 1)
        progress("validate", 0, len(df))
    rows, issues = parse_roster(df, records, fmap)
    report.extend(issues)
    vault = vault or Vault.from_settings()
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            store.lock(conn, "household", "resident")
            _check_against_db(conn, rows, records, report, vault, area)
            if progress:
                progress("validate", len(df), len(df))
            if report.ok:
                try:
                    _write(conn, rows, report, vault, progress)
                except DBAPIError as exc:
                    diag = getattr(exc.orig, "diag", None)
                    detail = diag.message_primary if diag is not None and diag.message_primary else str(exc.orig)
                    if "row-level security" in detail:  # RLS WITH CHECK: a row outside the caller's scope
                        report.add(
                            "(database)",
                            "out_of_scope",
                            type(exc.orig).__name__,
                            msg("out_of_scope", f"数据库行级安全拒绝写入 row-level security refused: {detail}"),
                        )
                    else:
                        report.add("(database)", "database", type(exc.orig).__name__, msg("database", detail))
            settle(tx, report, dry_run=dry_run)
        except BaseException:
            if tx.is_active:
                tx.rollback()
            raise
    return report


def _out_of_scope(conn: Connection, codes: list[str], area: str) -> set[str]:
    """Codes of EXISTING buildings outside ``area`` or outside the connection's database scope
    (when one is set; the CLI's owner connection has none and is not limited)."""
    scope = conn.execute(text("SELECT coalesce(current_setting('gisgov.scope', true), '')")).scalar()
    check_db = bool(scope) and scope != "*"
    rows = conn.execute(
        text(
            "SELECT b.code, CASE WHEN :db THEN b.code IN (SELECT gisgov_scope_buildings()) ELSE true END "
            "FROM building b WHERE b.code = ANY(:c)"
        ),
        {"c": codes, "db": check_db},
    ).all()
    return {c for c, inside in rows if not inside or (area and not c.startswith(area))}


def _check_against_db(
    conn: Connection, rows: pd.DataFrame, records: list[str], report: Report, vault: Vault, area: str = ""
) -> None:
    # buildings by code or address
    codes = rows["building_code"]
    known = {
        r[0]
        for r in conn.execute(
            text("SELECT code FROM building WHERE code = ANY(:c)"), {"c": codes.dropna().unique().tolist()}
        )
    }
    bad = codes.notna().to_numpy() & ~codes.isin(known).to_numpy() & ~rows["_bad"].to_numpy()
    for i in np.flatnonzero(bad):
        report.add(
            records[i], "building_unknown", codes.iloc[i], msg("building_unknown", f"no building {codes.iloc[i]}")
        )
    need_addr = codes.isna().to_numpy() & rows["address"].notna().to_numpy()
    if need_addr.any():
        addrs = rows["address"][need_addr].unique().tolist()
        found: dict[str, list[str]] = {}
        for code, addr in conn.execute(
            text("SELECT code, address FROM building WHERE address = ANY(:a)"), {"a": addrs}
        ):
            found.setdefault(addr, []).append(code)
        resolved = np.array(rows["building_code"].tolist(), dtype=object)
        for i in np.flatnonzero(need_addr):
            a = rows["address"].iloc[i]
            hits = found.get(a, [])
            if len(hits) == 1:
                resolved[i] = hits[0]
            elif not hits:
                report.add(records[i], "address_unknown", a, msg("address_unknown"))
            else:
                report.add(records[i], "address_ambiguous", a, msg("address_ambiguous", ", ".join(sorted(hits)[:5])))
        rows["building_code"] = resolved
    # scope: every building must lie in the caller's area / database scope
    resolved_codes = rows["building_code"]
    have = resolved_codes.dropna().unique().tolist()
    outside = _out_of_scope(conn, have, area) if have else set()
    if outside:
        for i, c in enumerate(resolved_codes.tolist()):
            if c in outside:
                report.add(
                    records[i],
                    "out_of_scope",
                    c,
                    msg("out_of_scope", f"楼栋 building {c} 不在本账号范围内 is not in this account's scope"),
                )
    # special groups
    lookup = {}
    for code, zh, en in conn.execute(text("SELECT code, name_zh, name_en FROM special_group")):
        for k in (code, zh, en):
            lookup[k.lower()] = code
    groups, gi = _resolve_groups(rows["groups_raw"], lookup, records)
    report.extend(gi)
    rows["groups"] = groups
    # ID numbers already stored (hash lookup, never the clear value)
    ids = rows["id_number"]
    has = ids.notna().to_numpy()
    hashes = np.empty(len(rows), dtype=object)
    hashes[has] = [vault.digest(v) for v in ids[has]]
    rows["id_hash"] = hashes
    if has.any():
        hs = [bytes(h) for h in hashes[has]]
        taken = set()
        for k in range(0, len(hs), 200000):
            taken |= {
                bytes(r[0])
                for r in conn.execute(
                    text("SELECT id_hash FROM resident WHERE id_hash = ANY(:h)"), {"h": hs[k : k + 200000]}
                )
            }
        if taken:
            for i in np.flatnonzero(has):
                if bytes(hashes[i]) in taken:
                    report.add(records[i], "id_exists", _mask_id_value(ids.iloc[i]), msg("id_exists"))


def _write(conn: Connection, rows: pd.DataFrame, report: Report, vault: Vault, progress) -> None:
    n = len(rows)
    b_codes = rows["building_code"].to_numpy(dtype=object)
    doors = rows["door_no"].map(lambda v: str(v).strip()).to_numpy(dtype=object)
    blist = sorted(set(b_codes))
    existing: dict[tuple[str, str], str] = {}
    top: dict[str, int] = {}
    for code, b, door in conn.execute(
        text("SELECT code, building_code, door_no FROM household WHERE building_code = ANY(:b)"), {"b": blist}
    ):
        existing[(b, door or code[-4:])] = code
        top[b] = max(top.get(b, 0), int(code[-4:]))
    hh, _ = _households(b_codes, doors, existing, top)
    ids = rows["id_number"].to_numpy(dtype=object)
    hashes = rows["id_hash"].to_numpy(dtype=object)
    phones = rows["phone"].to_numpy(dtype=object)
    groups = rows["groups"].to_numpy(dtype=object) if "groups" in rows else np.full(n, None, dtype=object)
    names = rows["name"].to_numpy(dtype=object)
    gender = rows["gender"].to_numpy(dtype=object)
    by = rows["birth_year"].to_numpy(dtype=object, na_value=None)
    role = rows["role"].to_numpy(dtype=object)
    residence = rows["residence"].to_numpy(dtype=object)
    conn.exec_driver_sql("""
        CREATE TEMP TABLE _roster (
            rid bigint NOT NULL DEFAULT nextval(pg_get_serial_sequence('resident', 'id')),
            hh_code text, building_code text, door_no text, residence text, name text, gender text,
            birth_year smallint, role text, id_hash bytea, id_cipher bytea, id_last4 text,
            phone_cipher bytea, phone_masked text, groups text[]) ON COMMIT DROP""")
    enc = vault.encrypt

    def gen():
        for i in range(n):
            idv = ids[i]
            if idv is not None:
                h, c, l4 = hashes[i], enc(idv), idv[-4:]
            else:
                h = c = l4 = None
            ph = phones[i]
            if ph is not None:
                clean = re.sub(r"[\s\-]", "", ph)
                pc, pm = enc(clean), mask_phone(clean)
            else:
                pc = pm = None
            yield (
                hh[i],
                b_codes[i],
                doors[i],
                residence[i],
                names[i],
                gender[i],
                by[i],
                role[i],
                h,
                c,
                l4,
                pc,
                pm,
                groups[i],
            )

    cols = [
        "hh_code",
        "building_code",
        "door_no",
        "residence",
        "name",
        "gender",
        "birth_year",
        "role",
        "id_hash",
        "id_cipher",
        "id_last4",
        "phone_cipher",
        "phone_masked",
        "groups",
    ]
    store.copy_rows(conn, "_roster", cols, gen(), progress, n, every=50000)
    if progress:
        progress("households", 0, 1)
    # a household's 居住类型 is its head's (户主), else its first row's
    new_hh = conn.exec_driver_sql("""
        INSERT INTO household (code, building_code, door_no, residence)
        SELECT DISTINCT ON (hh_code) hh_code, building_code, door_no, residence FROM _roster r
        WHERE NOT EXISTS (SELECT 1 FROM household h WHERE h.code = r.hh_code)
        ORDER BY hh_code, (role IS DISTINCT FROM '户主'), rid""").rowcount
    if progress:
        progress("households", 1, 1)
        progress("residents", 0, 1)
    # every person keeps their own 居住类型 (migration 0013), the household its head's
    n_res = conn.exec_driver_sql("""
        INSERT INTO resident (id, household_id, name, gender, birth_year, role, id_hash, id_cipher, id_last4,
                              phone_cipher, phone_masked, geom, residence)
        OVERRIDING SYSTEM VALUE
        SELECT r.rid, h.id, r.name, r.gender, r.birth_year, r.role, r.id_hash, r.id_cipher, r.id_last4,
               r.phone_cipher, r.phone_masked, b.pos, r.residence
        FROM _roster r JOIN household h ON h.code = r.hh_code JOIN building b ON b.code = r.building_code""").rowcount
    n_grp = conn.exec_driver_sql("""
        INSERT INTO resident_group (resident_id, group_code)
        SELECT DISTINCT rid, unnest(groups) FROM _roster WHERE groups IS NOT NULL""").rowcount
    if progress:
        progress("residents", 1, 1)
    updated = estimates.roster_wins(conn, blist)
    report.counts.update(written=n_res, households_created=new_hh, group_tags=n_grp, buildings_counted=updated)
