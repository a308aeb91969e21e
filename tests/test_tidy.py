"""Tidy-ups of issue 10: plugin lists fail loudly on a typo, domain constants have one source."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from gisgov import plugins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A throwaway package ``tidyplug`` on sys.path; ``make(name, source)`` adds a module to it."""
    pkg = tmp_path / "tidyplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(name: str, source: str) -> str:
        (pkg / f"{name}.py").write_text(textwrap.dedent(source))
        return f"tidyplug.{name}"

    yield make
    for mod in [m for m in sys.modules if m == "tidyplug" or m.startswith("tidyplug.")]:
        del sys.modules[mod]


def test_a_misspelt_module_raises_naming_it(plugin_dir):
    ok = plugin_dir("good", "VALUE = 1\n")
    with pytest.raises(plugins.PluginModuleNotFound, match=r"'tidyplug\.goood' not found"):
        list(plugins.optional_modules([ok, "tidyplug.goood"]))


def test_a_misspelt_package_raises_too():
    with pytest.raises(plugins.PluginModuleNotFound, match=r"gisgov\.clii\.sample"):
        list(plugins.optional_modules(["gisgov.clii.sample"]))


def test_the_real_module_lists_all_exist():
    from gisgov.api.app import ROUTER_MODULES
    from gisgov.cli.main import CLI_MODULES

    mods = list(plugins.optional_modules([*ROUTER_MODULES, *CLI_MODULES]))
    assert [m.__name__ for m in mods] == [*ROUTER_MODULES, *CLI_MODULES]


def test_a_module_needing_an_absent_optional_dependency_is_skipped(plugin_dir, monkeypatch, caplog):
    monkeypatch.setitem(plugins.OPTIONAL_DEPENDENCIES, "tidy_absent_extra_dep", "tidyextra")
    needs = plugin_dir("needs_extra", "import tidy_absent_extra_dep.sub\n")
    ok = plugin_dir("fine", "VALUE = 2\n")
    with caplog.at_level("INFO", logger="gisgov.plugins"):
        mods = list(plugins.optional_modules([needs, ok]))
    assert [m.__name__ for m in mods] == [ok]
    assert "gisgov[tidyextra]" in caplog.text and needs in caplog.text


def test_a_module_needing_an_undeclared_missing_dependency_raises(plugin_dir):
    broken = plugin_dir("broken", "import tidy_not_a_real_dependency\n")
    with pytest.raises(ModuleNotFoundError) as info:
        list(plugins.optional_modules([broken]))
    assert info.value.name == "tidy_not_a_real_dependency"
    assert not isinstance(info.value, plugins.PluginModuleNotFound)


def test_an_import_error_inside_a_module_is_not_hidden(plugin_dir):
    bad = plugin_dir("bad", "from os import no_such_name\n")
    with pytest.raises(ImportError, match="no_such_name"):
        list(plugins.optional_modules([bad]))


def test_optional_dependencies_are_the_extras_of_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in plugins.OPTIONAL_DEPENDENCIES.items():
        assert extra in extras, extra
        names = [r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for r in extras[extra]]
        assert module in names, (module, extra, names)


# -- GB 11643 ID numbers: one source for the weights and check characters --------------------------------------

ID_EXAMPLE = "11010519491231002X"  # the standard's own example


def test_id_weights_are_iso_7064_mod_11_2():
    from gisgov.domain import idcard

    assert tuple(pow(2, 17 - i, 11) for i in range(17)) == idcard.WEIGHTS
    assert idcard.check_digit(ID_EXAMPLE[:17]) == "X"
    with pytest.raises(ValueError, match="17"):
        idcard.check_digit("1101051949123100")


def test_every_module_uses_the_one_implementation():
    from gisgov.domain import idcard
    from gisgov.security import pii, reident

    assert reident.WEIGHTS is idcard.WEIGHTS and reident.CHECK is idcard.CHECK_CHARS
    assert pii.id_problem(ID_EXAMPLE) is None and pii.id_problem(ID_EXAMPLE[:17] + "0") is not None
    for first in ("11010519491231002", "44030419900101123", "51010820000229001"):
        assert pii.id_check_digit(first) == idcard.check_digit(first)


# files that still carry their own copy, waiting for their owner to switch to gisgov.domain.idcard
ID_COPIES_PENDING: set[str] = set()


def test_no_other_copy_of_the_weights_in_the_package():
    copies = set()
    for path in (ROOT / "gisgov").rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        if "7, 9, 10, 5, 8, 4, 2, 1, 6, 3" in src or "10X98765432" in src:
            copies.add(path.relative_to(ROOT).as_posix())
    assert copies - ID_COPIES_PENDING == {"gisgov/domain/idcard.py"}


def test_vectorised_check_agrees_with_the_scalar_one():
    import random

    from gisgov.domain import idcard

    rng = random.Random(11643)
    firsts = ["".join(rng.choice("0123456789") for _ in range(17)) for _ in range(500)]
    good = [f + idcard.check_digit(f) for f in firsts]
    bad = [f + ("0" if idcard.check_digit(f) != "0" else "1") for f in firsts]
    assert idcard.check_digits_ok(good).all() and not idcard.check_digits_ok(bad).any()
    odd = [ID_EXAMPLE.lower(), ID_EXAMPLE[:17], ID_EXAMPLE + "1", "１１010519491231002X", "1101051949123100AX", ""]
    assert idcard.check_digits_ok(odd).tolist() == [False] * len(odd)
    assert idcard.check_digits_ok([]).shape == (0,)


def test_agrees_with_python_stdnum():
    ric = pytest.importorskip("stdnum.cn.ric")
    from gisgov.domain import idcard

    for first in ("11010519491231002", "44030419900101123", "51010820000229001", "65010219841130555"):
        assert ric.calc_check_digit(first + "0") == idcard.check_digit(first)  # stdnum wants all 18


# -- grid staff roles: one list ----------------------------------------------------------------------------------


def test_staff_roles_match_the_schema_and_the_counting_sql():
    import re

    from gisgov.domain.staff import ROLE_EN, ROLES

    mig = (ROOT / "migrations" / "versions" / "0001_foundation.py").read_text(encoding="utf-8")
    check = re.search(r"role\s+text NOT NULL CHECK \(role IN \(([^)]*)\)\)", mig)
    assert check is not None
    assert tuple(re.findall(r"'([^']+)'", check.group(1))) == ROLES
    sql = (ROOT / "gisgov" / "stats" / "sql" / "grids.sql").read_text(encoding="utf-8")
    counted = dict(re.findall(r"s\.role = '([^']+)'\)::bigint AS role_(\d)", sql))
    assert [r for r, _ in sorted(counted.items(), key=lambda kv: kv[1])] == list(ROLES)
    assert set(ROLE_EN) == set(ROLES) and all(v == v.lower() for v in ROLE_EN.values())


# modules that still carry their own English staff-role names, waiting for their owner to switch
STAFF_NAMES_PENDING: set[str] = set()


def test_staff_role_names_agree_everywhere():
    import importlib

    from gisgov.domain.staff import ROLE_EN
    from gisgov.governance import staff

    assert staff.ROLE_EN is ROLE_EN and tuple(ROLE_EN) == staff.ROLES
    others = {"gisgov.stats.units": "STAFF_ROLES", "gisgov.sample.staff": "ROLE_EN"}
    disagree = set()
    for name, attr in others.items():
        value = getattr(importlib.import_module(name), attr)
        pairs = dict(value) if not isinstance(value, dict) else value
        if any(ROLE_EN.get(zh) != en for zh, en in pairs.items()):
            disagree.add(name)
    assert disagree <= STAFF_NAMES_PENDING


# -- CRS and GeoJSON precision: one constant each -----------------------------------------------------------------

# files outside this change's reach that still spell them out (their owners switch to gisgov.crs)
CRS_LITERALS_PENDING: set[str] = set()


def _python_sources():
    for path in sorted((ROOT / "gisgov").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def test_wgs84_is_spelt_once_outside_sql():
    import re

    code_use = re.compile(r"(to_crs\(|transformer\(|epsg=|crs=|== |WGS84 = )4326\b")
    found = {rel for rel, src in _python_sources() if code_use.search(src)}
    assert found - CRS_LITERALS_PENDING == {"gisgov/crs.py"}


def _asgeojson_literal_precision(src: str) -> bool:
    """True if some ``ST_AsGeoJSON(…, <digits>)`` call spells its precision out."""
    import re

    for m in re.finditer(r"ST_AsGeoJSON\(", src):
        depth, i = 1, m.end()
        while i < len(src) and depth:
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            i += 1
        args = src[m.end() : i - 1]
        if re.search(r",\s*\d+\s*$", args):
            return True
    return False


def test_geojson_precision_is_one_constant():
    import re

    from gisgov.crs import GEOJSON_PRECISION

    assert GEOJSON_PRECISION == 7
    assert _asgeojson_literal_precision("ST_AsGeoJSON(ST_Transform(ST_PointOnSurface(coalesce(a, b)), 4326), 6) AS x")
    assert not _asgeojson_literal_precision("ST_AsGeoJSON(ST_Transform(geom, 4326), :prec)")
    found = {
        rel
        for rel, src in _python_sources()
        if _asgeojson_literal_precision(src) or re.search(r"^\w*PRECISION = \d", src, re.M)
    }
    assert found - CRS_LITERALS_PENDING == {"gisgov/crs.py"}


# -- bilingual messages -------------------------------------------------------------------------------------------

# files whose English-only messages their owners are rewriting (to be emptied)
MONOLINGUAL_PENDING: set[str] = set()
_CJK = __import__("re").compile(r"[\u4e00-\u9fff]")


def _invalid_input_classes() -> set[str]:
    """InvalidInput and every subclass defined in the package (by name)."""
    import ast

    names, changed = {"InvalidInput", "InvalidGeometry"}, True
    trees = [ast.parse(src) for _, src in _python_sources()]
    while changed:
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.ClassDef)
                    and node.name not in names
                    and any(getattr(b, "id", getattr(b, "attr", None)) in names for b in node.bases)
                ):
                    names.add(node.name)
                    changed = True
    return names


def test_invalid_input_messages_are_bilingual():
    import ast

    classes = _invalid_input_classes()
    assert {"CatalogError", "ConfigError", "UsageError", "UploadRejected"} <= classes
    english_only = {}
    for rel, src in _python_sources():
        for node in ast.walk(ast.parse(src)):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", None))
            if name not in classes or name == "UploadRejected":  # UploadRejected words its rule itself
                continue
            literal = [a for a in node.exc.args if isinstance(a, (ast.Constant, ast.JoinedStr))]
            if literal and not _CJK.search(ast.get_source_segment(src, node.exc) or ""):
                english_only.setdefault(rel, []).append(node.lineno)
    left = {k: v for k, v in english_only.items() if k not in MONOLINGUAL_PENDING}
    assert left == {}, left


def test_bilingual_messages_split_into_clean_halves():
    from gisgov.coverage.catalog import CatalogError, parse_catalog
    from gisgov.errors import split_message

    with pytest.raises(CatalogError) as info:
        parse_catalog({"circles": []})
    zh, en = split_message(str(info.value))
    assert zh and not any(c.isascii() and c.isalpha() for c in zh), zh
    assert en and "rule:" in en and not _CJK.search(en), en


# -- rendering stays out of the computation packages ----------------------------------------------------------------


def test_coverage_package_does_not_import_folium():
    import subprocess

    code = (
        "import importlib, pkgutil, sys, gisgov.coverage as c\n"
        "for m in pkgutil.iter_modules(c.__path__): importlib.import_module('gisgov.coverage.' + m.name)\n"
        "print('folium' in sys.modules, 'gisgov.coverage.service' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr
    for path in (ROOT / "gisgov" / "coverage").rglob("*.py"):
        assert "folium" not in path.read_text(encoding="utf-8"), path.name


def test_the_coverage_map_lives_with_the_other_maps():
    from gisgov.maps import coverage_map

    assert callable(coverage_map.build_coverage_map) and callable(coverage_map.coverage_map_html)
    assert not (ROOT / "gisgov" / "coverage" / "mapping.py").exists()
