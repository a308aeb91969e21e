"""The import report: one line per record that broke (or needed) a rule, and the outcome.

A report line names the file, the record (feature id or spreadsheet row), the rule and the value,
so a planner can find and fix the record. ``action`` says what happened to it: ``rejected`` (the
whole import is refused), ``repaired`` (fixed with ``--repair``, the fix is described) or ``info``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Exit codes of `gisgov load` / `gisgov export` (documented in the README).
EXIT_LOADED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3

REJECTED = "rejected"
REPAIRED = "repaired"
INFO = "info"


@dataclass
class Issue:
    record: str
    rule: str
    value: str
    message: str
    action: str = REJECTED
    file: str = ""

    def line(self) -> str:
        tag = {REJECTED: "拒绝 rejected", REPAIRED: "修复 repaired", INFO: "提示 info"}[self.action]
        return f"{self.file}: {self.record}: [{self.rule}] {self.message} (value: {self.value}) → {tag}"


@dataclass
class Report:
    """Outcome of one load. ``status`` is ``loaded``, ``rejected`` or ``dry-run``."""

    file: str
    level: str
    issues: list[Issue] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    dry_run: bool = False

    def add(self, record: str, rule: str, value: Any, message: str, action: str = REJECTED) -> None:
        self.issues.append(Issue(str(record), rule, _short(value), message, action, self.file))

    def extend(self, issues: list[Issue]) -> None:
        for i in issues:
            i.file = i.file or self.file
            self.issues.append(i)

    @property
    def rejected(self) -> list[Issue]:
        return [i for i in self.issues if i.action == REJECTED]

    @property
    def repaired(self) -> list[Issue]:
        return [i for i in self.issues if i.action == REPAIRED]

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def exit_code(self) -> int:
        return EXIT_LOADED if self.ok else EXIT_REJECTED

    def to_dict(self, max_issues: int | None = None) -> dict[str, Any]:
        issues = self.issues if max_issues is None else self.issues[:max_issues]
        return {
            "file": self.file,
            "level": self.level,
            "status": self.status,
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "stats": dict(self.stats),
            "n_rejected": len(self.rejected),
            "n_repaired": len(self.repaired),
            "issues": [asdict(i) for i in issues],
            "issues_truncated": max(0, len(self.issues) - len(issues)),
        }


def _short(value: Any, limit: int = 120) -> str:
    s = "" if value is None else str(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def settle(tx, report: Report, *, dry_run: bool) -> Report:
    """End a load's single transaction by its report: any rejection or a dry run rolls back
    (nothing written), otherwise commit. Sets ``report.status`` accordingly."""
    if not report.ok:
        tx.rollback()
        report.status = "rejected"
    elif dry_run:
        tx.rollback()
        report.status = "dry-run"
    else:
        tx.commit()
        report.status = "loaded"
    return report
