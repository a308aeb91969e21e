"""The staff import template (XLSX) and reading a filled-in one into template records."""

from __future__ import annotations

import io
import re
from pathlib import Path

from gisgov.errors import InvalidInput
from gisgov.governance import staff as st

SHEET = "网格员 staff"


def template_bytes() -> bytes:
    """An XLSX with the header row 网格编码 | 角色 | 姓名 | 手机号 (a role drop-down) and a second sheet
    explaining the rules."""
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append(list(st.HEADERS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for col, width in zip("ABCD", (20, 14, 16, 16), strict=True):
        ws.column_dimensions[col].width = width
    # no pre-formatted rows (they would count as used rows); codes and phones typed as numbers are read
    # back exactly (15 and 11 digits fit a double) and turned into text by the reader
    dv = DataValidation(type="list", formula1='"' + ",".join(st.ROLES) + '"', allow_blank=False)
    ws.add_data_validation(dv)
    dv.add("B2:B2000")
    info = wb.create_sheet("说明 notes")
    for line in (
        ("网格编码 grid code", "当前方案的15位网格编码 the 15-digit code of a grid of the active plan, in your area"),
        ("角色 role", " / ".join(st.ROLES)),
        ("姓名 name", f"必填，最多{st.MAX_NAME}字 required, at most {st.MAX_NAME} characters"),
        (
            "手机号 phone",
            "11位手机号或座机（可空），入库加密，只显示脱敏号码 11-digit mobile or landline (may be blank); "
            "stored encrypted, shown masked",
        ),
        ("规则 rule", "每个网格须有网格长和至少一名专职网格员 every grid needs a 网格长 and at least one 专职网格员"),
        (
            "导入 import",
            "全部通过才写入；replace 模式以文件内容替换所列网格的人员 all or nothing; mode replace sets the "
            "staff of every grid named in the file to the file's rows",
        ),
    ):
        info.append(list(line))
    info.column_dimensions["A"].width = 18
    info.column_dimensions["B"].width = 100
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def read_records(path: Path, display_name: str) -> list[dict]:
    """Records (template header → cell text or None) of the first sheet; the header row is row 1.
    Missing headers: 422 naming them."""
    from gisgov.ingest.readers import ReadError, read_table

    if Path(display_name).suffix.lower() not in (".xlsx", ".xlsm"):
        raise InvalidInput(
            f"{display_name}: 请上传 XLSX 文件 upload an .xlsx file (the template: GET /api/staff/template)"
        )
    try:
        df, _, _ = read_table(path, display_name=display_name)
    except ReadError as exc:
        msg = str(exc)  # the reader's message is bilingual for most causes, not all
        raise InvalidInput(msg if re.search(r"[\u4e00-\u9fff]", msg) else f"无法读取文件 {msg}") from None
    found, missing = st.map_headers([str(c) for c in df.columns])
    if missing:
        raise InvalidInput(
            "缺少表头 missing headers: "
            + ", ".join(f"{h} ({st.HEADER_EN[h]})" for h in missing)
            + f"; found: {', '.join(map(str, df.columns)) or '(none)'}"
        )

    def cell(v):
        return None if v is None or (isinstance(v, float) and v != v) else v

    return [{h: cell(rec.get(col)) for h, col in found.items()} for rec in df.to_dict("records")]
