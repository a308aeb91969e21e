"""The response scanner of the test run (tests/pii_response_hook.py) fails a test whose response
leaks a clear ID or mobile number, also when the test swallows the error, and lets masked data,
other numbers and published example values through."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pii_response_hook import ClearPiiInResponse, _pii_leaks
from pii_scanner import id_check_char, scan_body

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
BORN = "34010419850723001"  # 17 digits: region 340104, born 1985-07-23, sequence 001
LEAK_ID = BORN + id_check_char(BORN)


def test_installed_hook_raises_on_a_leaking_response():
    app = FastAPI()

    @app.get("/leak")
    def leak():
        return {"name": "张三", "id_number": LEAK_ID}

    @app.get("/masked")
    def masked():
        return {
            "id_number": LEAK_ID[:6] + "********" + LEAK_ID[-4:],
            "phone": "138****5678",
            "household": "340104001001001000011",
            "lon": 117.13912345678,
        }

    with TestClient(app) as c:
        assert c.get("/masked").status_code == 200
        assert not _pii_leaks
        with pytest.raises(ClearPiiInResponse, match=r"GET /leak .*id 340…"):
            c.get("/leak")
    assert len(_pii_leaks) == 1
    _pii_leaks.clear()  # handled here; the teardown check would otherwise fail this test


def test_scan_body_types():
    body = f'{{"id": "{LEAK_ID}", "mobile": "13912345678"}}'.encode()
    assert [k for k, _ in scan_body("application/json", body)] == ["id", "mobile"]
    assert scan_body("application/geo+json; charset=utf-8", body)
    assert scan_body("text/csv; charset=utf-8", body)
    assert scan_body("text/html", body)
    assert scan_body("image/png", body) == []
    assert scan_body("text/html", b'<div id="map_a17875213051b"></div><p>\xe7\x94\xb5\xe8\xaf\x9d13912345678</p>') == [
        ("mobile", "13912345678")
    ]  # inside an element id: not a number; after CJK text: found
    assert scan_body("application/json", b'{"ex": "11010519491231002X", "tel": "13800138000"}') == []


def test_scan_body_reads_xlsx(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["姓名", "身份证号"])
    wb.active.append(["张三", LEAK_ID])
    path = tmp_path / "r.xlsx"
    wb.save(path)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert scan_body(xlsx, path.read_bytes()) == [("id", LEAK_ID)]


def test_a_leaking_test_fails_even_if_it_swallows_the_error(pytester):
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
        "from pii_response_hook import _pii_scanner, _pii_scanner_installed, "
        "pytest_runtest_makereport  # noqa: F401\n"
    )
    pytester.makepyfile(
        test_inner=f'''
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        app = FastAPI()

        @app.get("/leak")
        def leak():
            return {{"id_number": "{LEAK_ID}"}}

        @app.get("/phone")
        def phone():
            return {{"phone": "13912345678"}}

        @app.get("/fine")
        def fine():
            return {{"id_number": "340104********{LEAK_ID[-4:]}"}}

        def test_leaks():
            with TestClient(app) as c:
                c.get("/leak")

        def test_leaks_swallowed():
            with TestClient(app) as c:
                try:
                    c.get("/phone")
                except AssertionError:
                    pass

        def test_admin_is_not_exempt():
            with TestClient(app, headers={{"Authorization": "Bearer admin-token"}}) as c:
                c.get("/leak")

        def test_masked_passes():
            with TestClient(app) as c:
                assert c.get("/fine").status_code == 200
    '''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=2, errors=1)
    out = result.stdout.str()
    assert "ClearPiiInResponse" in out and "test swallowed the error" in out
    assert LEAK_ID not in out and "13912345678" not in out  # reports do not repeat the numbers
