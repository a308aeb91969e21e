"""mypy with a baseline that may only shrink, and no error at all in the strict packages.

mypy runs with the configuration in ``pyproject.toml`` (``[tool.mypy]``: the ``gisgov`` package;
``strict = true`` for the packages named in a ``[[tool.mypy.overrides]]`` section). Its errors are
compared with ``tools/mypy-baseline.txt``: one line per known error, ``path: code: message``,
without line numbers, so that code moving up or down a file does not break the comparison; the
comparison counts errors per (path, code, message).

Usage (from the repository root)::

    python tools/mypy_baseline.py check
        exit 0: every error is in the baseline and the strict packages have none; says how many
                baseline entries are fixed (the baseline could shrink: run ``update``)
        exit 1: errors not in the baseline (printed with their line numbers), or any error in a
                strict package (printed, baseline or not)
        exit 2: mypy itself failed (configuration error, crash)

    python tools/mypy_baseline.py update [--allow-growth]
        rewrites the baseline from the current errors. It refuses (exit 1) when that would add an
        entry, unless ``--allow-growth`` is given (first creation, or an accepted new debt). Errors in
        the strict packages never enter the baseline.

Fixing an error elsewhere: fix it, then run ``update`` so the baseline shrinks with it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "mypy-baseline.txt"
HEADER = (
    "# mypy errors accepted outside the strict packages: may only shrink.\n"
    "# Regenerate with: python tools/mypy_baseline.py update   (see that file's docstring)\n"
)

_LINE = re.compile(
    r"^(?P<path>[^:\n]+?):(?P<line>\d+)(?::\d+)?(?::\d+:\d+)?: (?P<severity>error|note|warning): "
    r"(?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)
_LINE_REF = re.compile(r"\bline \d+\b")


@dataclass(frozen=True)
class MypyError:
    path: str
    line: int
    code: str
    message: str

    @property
    def key(self) -> str:
        """The baseline entry: path, code and message, line numbers left out (also those the
        message itself cites, e.g. ``defined on line 12``)."""
        return f"{self.path}: {self.code}: {_LINE_REF.sub('line N', self.message)}"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: error: {self.message}  [{self.code}]"


@dataclass(frozen=True)
class Comparison:
    new: list[MypyError]  # errors the baseline does not cover
    fixed: Counter[str]  # baseline entries no error matches any more
    strict: list[MypyError]  # errors in a strict package (never allowed)

    @property
    def ok(self) -> bool:
        return not self.new and not self.strict


def parse_output(text: str) -> list[MypyError]:
    """The errors in mypy's output (notes and the summary line dropped). Paths use ``/``."""
    errors = []
    for raw in text.splitlines():
        m = _LINE.match(raw.rstrip())
        if m is None or m["severity"] != "error":
            continue
        path = m["path"].replace("\\", "/")
        errors.append(MypyError(path, int(m["line"]), m["code"] or "misc", m["message"]))
    return errors


def read_baseline(text: str) -> Counter[str]:
    """Baseline entries with their counts (one line per error; ``#`` lines and blanks ignored)."""
    return Counter(s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#"))


def format_baseline(errors: Iterable[MypyError]) -> str:
    return HEADER + "".join(f"{k}\n" for k in sorted(e.key for e in errors))


def strict_prefixes(pyproject: dict[str, object]) -> list[str]:
    """Path prefixes (``gisgov/network/``) of the modules a ``[[tool.mypy.overrides]]`` section
    makes strict; a module pattern ``a.b.*`` covers the package ``a/b/`` and ``a/b.py``."""
    tool = pyproject.get("tool", {})
    mypy = tool.get("mypy", {}) if isinstance(tool, dict) else {}
    overrides = mypy.get("overrides", []) if isinstance(mypy, dict) else []
    out: list[str] = []
    for section in overrides:
        if not isinstance(section, dict) or not section.get("strict"):
            continue
        modules = section.get("module", [])
        for mod in [modules] if isinstance(modules, str) else modules:
            base = str(mod).removesuffix(".*").replace(".", "/")
            out += [f"{base}/", f"{base}.py"]
    return out


def in_strict(error: MypyError, prefixes: Sequence[str]) -> bool:
    return any(error.path.startswith(p) if p.endswith("/") else error.path == p for p in prefixes)


def compare(errors: Sequence[MypyError], baseline: Counter[str], prefixes: Sequence[str] = ()) -> Comparison:
    """Errors beyond the baseline's count for their entry are new (the later ones in file order);
    errors in a strict package are reported whatever the baseline says."""
    strict = [e for e in errors if in_strict(e, prefixes)]
    left = Counter(baseline)
    new = []
    for e in sorted((e for e in errors if not in_strict(e, prefixes)), key=lambda e: (e.path, e.line)):
        if left[e.key] > 0:
            left[e.key] -= 1
        else:
            new.append(e)
    fixed = Counter({k: v for k, v in left.items() if v > 0})
    return Comparison(new, fixed, strict)


def growth(errors: Sequence[MypyError], baseline: Counter[str], prefixes: Sequence[str] = ()) -> list[MypyError]:
    """What ``update`` would add to the baseline."""
    return compare(errors, baseline, prefixes).new


def run_mypy(root: Path = ROOT) -> tuple[int, str]:
    """mypy over the configured files; its exit status and output (stdout then stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-pretty", "--show-error-codes", "--no-color-output"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _load_prefixes(root: Path) -> list[str]:
    with (root / "pyproject.toml").open("rb") as f:
        return strict_prefixes(tomllib.load(f))


def check(baseline_path: Path = BASELINE, root: Path = ROOT) -> int:
    status, out = run_mypy(root)
    errors = parse_output(out)
    if status not in (0, 1) or (status == 1 and not errors):
        print(out, file=sys.stderr)
        print(f"mypy failed (exit {status}) 类型检查未能运行", file=sys.stderr)
        return 2
    baseline = read_baseline(baseline_path.read_text(encoding="utf-8")) if baseline_path.exists() else Counter()
    res = compare(errors, baseline, _load_prefixes(root))
    for e in res.strict:
        print(e)
    if res.strict:
        print(f"{len(res.strict)} mypy error(s) in strict packages 严格检查的包中有类型错误 (never baselined)")
    for e in res.new:
        print(e)
    if res.new:
        print(f"{len(res.new)} new mypy error(s) not in {baseline_path.name} 新的类型错误")
    if not res.ok:
        return 1
    n_fixed = sum(res.fixed.values())
    msg = f"mypy: {len(errors)} error(s), all in the baseline 均在基线内"
    if n_fixed:
        msg += f"; {n_fixed} baseline entr{'y is' if n_fixed == 1 else 'ies are'} fixed: run `python tools/mypy_baseline.py update` to shrink it"
    print(msg)
    return 0


def update(baseline_path: Path = BASELINE, root: Path = ROOT, *, allow_growth: bool = False) -> int:
    status, out = run_mypy(root)
    errors = parse_output(out)
    if status not in (0, 1) or (status == 1 and not errors):
        print(out, file=sys.stderr)
        print(f"mypy failed (exit {status}) 类型检查未能运行", file=sys.stderr)
        return 2
    prefixes = _load_prefixes(root)
    baseline = read_baseline(baseline_path.read_text(encoding="utf-8")) if baseline_path.exists() else Counter()
    added = growth(errors, baseline, prefixes)
    if added and not allow_growth:
        for e in added:
            print(e)
        print(f"refusing to add {len(added)} entr(ies) to the baseline 基线只能缩小 (--allow-growth to accept)")
        return 1
    kept = [e for e in errors if not in_strict(e, prefixes)]
    skipped = len(errors) - len(kept)
    baseline_path.write_text(format_baseline(kept), encoding="utf-8")
    before = sum(baseline.values())
    print(f"{baseline_path.name}: {before} -> {len(kept)} entries")
    if skipped:
        print(f"{skipped} error(s) in strict packages left out: `check` fails until they are fixed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="fail on errors not in the baseline or in strict packages")
    up = sub.add_parser("update", help="rewrite the baseline from the current errors")
    up.add_argument("--allow-growth", action="store_true", help="accept new entries")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    args = ap.parse_args(argv)
    if args.command == "check":
        return check(args.baseline)
    return update(args.baseline, allow_growth=args.allow_growth)


if __name__ == "__main__":
    sys.exit(main())
