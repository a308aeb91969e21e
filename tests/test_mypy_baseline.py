"""The mypy baseline comparison (tools/mypy_baseline.py): pure functions fed with mypy output text."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "mypy_baseline", Path(__file__).resolve().parent.parent / "tools" / "mypy_baseline.py"
)
assert _spec is not None and _spec.loader is not None
mb = importlib.util.module_from_spec(_spec)
sys.modules["mypy_baseline"] = mb
_spec.loader.exec_module(mb)

OUTPUT = """\
gisgov/api/app.py:12: error: Function is missing a return type annotation  [no-untyped-def]
gisgov/api/app.py:12: note: Use "-> None" if function does not return a value
gisgov/api/app.py:40: error: Function is missing a return type annotation  [no-untyped-def]
gisgov/cli/main.py:7: error: Name "x" already defined on line 3  [no-redef]
gisgov/gridding/heuristic.py:99: error: Missing type parameters for generic type "dict"  [type-arg]
gisgov/db/engine.py:5:10: error: Incompatible types in assignment (expression has type "int", variable has type "str")  [assignment]
Found 5 errors in 4 files (checked 165 source files)
"""

PREFIXES = ["gisgov/gridding/", "gisgov/gridding.py", "gisgov/stats/", "gisgov/stats.py"]


def test_parse_keeps_errors_drops_notes_and_summary():
    errs = mb.parse_output(OUTPUT)
    assert [(e.path, e.line, e.code) for e in errs] == [
        ("gisgov/api/app.py", 12, "no-untyped-def"),
        ("gisgov/api/app.py", 40, "no-untyped-def"),
        ("gisgov/cli/main.py", 7, "no-redef"),
        ("gisgov/gridding/heuristic.py", 99, "type-arg"),
        ("gisgov/db/engine.py", 5, "assignment"),
    ]
    assert errs[4].message.startswith("Incompatible types in assignment (expression")


def test_key_has_no_line_numbers_even_inside_the_message():
    e = mb.parse_output(OUTPUT)[2]
    assert e.key == 'gisgov/cli/main.py: no-redef: Name "x" already defined on line N'
    assert "7" not in e.key
    # the error as printed for a human keeps its line
    assert str(e).startswith("gisgov/cli/main.py:7: error:")


def test_error_without_code_is_misc():
    (e,) = mb.parse_output("gisgov/a.py:3: error: Something odd\n")
    assert e.code == "misc" and e.message == "Something odd"


def test_line_shifts_do_not_break_the_baseline():
    base = mb.read_baseline(mb.format_baseline(mb.parse_output(OUTPUT)))
    shifted = OUTPUT.replace(":12:", ":112:").replace(":40:", ":4:").replace(":7:", ":70:").replace("line 3", "line 30")
    res = mb.compare(mb.parse_output(shifted), base)
    assert res.ok and res.new == [] and not res.fixed


def test_counted_per_entry_a_second_identical_error_is_new():
    base = mb.read_baseline(mb.format_baseline(mb.parse_output(OUTPUT)))
    more = OUTPUT + 'gisgov/cli/main.py:90: error: Name "x" already defined on line 80  [no-redef]\n'
    res = mb.compare(mb.parse_output(more), base)
    assert not res.ok
    assert [(e.path, e.line) for e in res.new] == [("gisgov/cli/main.py", 90)]


def test_an_error_not_in_the_baseline_fails_and_fixed_ones_are_counted():
    base = mb.read_baseline(mb.format_baseline(mb.parse_output(OUTPUT)))
    now = OUTPUT.replace(
        "gisgov/api/app.py:40: error: Function is missing a return type annotation  [no-untyped-def]\n", ""
    )
    now += 'gisgov/api/deps.py:3: error: Returning Any from function declared to return "int"  [no-any-return]\n'
    res = mb.compare(mb.parse_output(now), base)
    assert [str(e) for e in res.new] == [
        'gisgov/api/deps.py:3: error: Returning Any from function declared to return "int"  [no-any-return]'
    ]
    assert res.fixed == Counter({"gisgov/api/app.py: no-untyped-def: Function is missing a return type annotation": 1})


def test_only_fixed_passes_and_reports_what_could_shrink():
    base = mb.read_baseline(mb.format_baseline(mb.parse_output(OUTPUT)))
    res = mb.compare(mb.parse_output(OUTPUT.splitlines()[0] + "\n"), base)
    assert res.ok and sum(res.fixed.values()) == 4


def test_strict_package_errors_fail_even_when_baselined():
    errs = mb.parse_output(OUTPUT)
    base = mb.read_baseline(mb.format_baseline(errs))  # even a baseline that lists it
    res = mb.compare(errs, base, PREFIXES)
    assert not res.ok and res.new == []
    assert [e.path for e in res.strict] == ["gisgov/gridding/heuristic.py"]
    # and a path merely starting like a strict package is not strict
    (e,) = mb.parse_output("gisgov/gridding_extra.py:1: error: x  [misc]\n")
    assert not mb.in_strict(e, PREFIXES)
    (e,) = mb.parse_output("gisgov/stats.py:1: error: x  [misc]\n")
    assert mb.in_strict(e, PREFIXES)


def test_growth_is_what_update_would_add():
    errs = mb.parse_output(OUTPUT)
    assert mb.growth(errs, Counter(), PREFIXES) == [e for e in errs if not e.path.startswith("gisgov/gridding/")]
    assert mb.growth(errs, mb.read_baseline(mb.format_baseline(errs)), PREFIXES) == []


def test_baseline_file_format_sorted_one_line_per_error_comments_ignored():
    text = mb.format_baseline(mb.parse_output(OUTPUT + OUTPUT))
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == sorted(lines) and len(lines) == 10
    assert all(":" in ln and not any(ch.isdigit() for ch in ln.split(":")[1]) for ln in lines)
    assert sum(mb.read_baseline(text + "\n# a comment\n\n").values()) == 10


def test_strict_prefixes_from_pyproject_overrides():
    cfg = {
        "tool": {
            "mypy": {
                "overrides": [
                    {"module": ["gisgov.network.*", "gisgov.stats.*"], "strict": True},
                    {"module": "gisgov.api.*", "disallow_untyped_defs": True},
                    {"module": "gisgov.crs", "strict": True},
                ]
            }
        }
    }
    assert mb.strict_prefixes(cfg) == [
        "gisgov/network/",
        "gisgov/network.py",
        "gisgov/stats/",
        "gisgov/stats.py",
        "gisgov/crs/",
        "gisgov/crs.py",
    ]
    assert mb.strict_prefixes({}) == []


def test_the_project_config_names_the_four_strict_packages():
    import tomllib

    root = Path(__file__).resolve().parent.parent
    with (root / "pyproject.toml").open("rb") as f:
        prefixes = mb.strict_prefixes(tomllib.load(f))
    for pkg in ("network", "security", "stats", "gridding"):
        assert f"gisgov/{pkg}/" in prefixes


@pytest.mark.parametrize("argv", [["update", "--bogus"], ["nope"]])
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as exc:
        mb.main(argv)
    assert exc.value.code == 2
