"""Proposing grid plans for every community on Dask (``gisgov grids propose --all --dask``).

One Dask task per community. A task receives only the community code, the database URL and the
proposal options; it opens its own connection, reads its community's context from PostGIS
(:func:`gisgov.gridding.service.propose_plan` → ``load_context``), solves, and **writes its own draft in
its own transaction** — exactly what the single-process ``--all`` loop does per community (one
``engine.begin()`` each), so drafts, parent versions, conflicts and the advisory lock per community are
those of the single-process path. Why the task writes and not the driver: the draft needs the
community's context (units, outlines) that the task already holds; shipping it back for the driver to
write would move every community's geometry through one process, which is what a cluster is for
avoiding. The driver only gathers the small answers.

A task Dask re-runs (its worker died after the commit) must not save a second draft: each saved draft is
tagged with the batch id (``grid_plan.stats->>'dask_batch'``) in the same transaction, and a task first
looks for a draft of its batch under the community's advisory lock.

Workers need the same gisgov installed, network access to the scheduler and to PostgreSQL, and a URL
whose credentials work from the worker machines (it is pickled to them; its ``repr`` hides the
password). Dask is imported inside functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, text

from gisgov.errors import GisgovError

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Database:
    """The database URL the workers connect with (credentials included; never shown by ``repr``)."""

    url: str = field(repr=False)

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"Database({make_url(self.url).render_as_string(hide_password=True)!r})"


@dataclass(frozen=True)
class ProposeOptions:
    """The options of ``gisgov grids propose`` that every community's task uses."""

    rules: dict[str, int | None] = field(default_factory=dict)
    lock: tuple[str, ...] = ()
    method: str = "auto"
    seed: int = 0
    time_limit_s: float = 10.0
    closest: bool = False
    save: bool = True
    activate: bool = False
    author: str | None = None
    note: str | None = None


def _lock(conn: Connection, code: str) -> None:
    """The per-community lock :func:`gisgov.gridding.io.save_plan` takes (transaction-scoped, re-entrant)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('grid_plan:' || :c))"), {"c": code})


def _done_before(conn: Connection, code: str, batch: str) -> JsonDict | None:
    """The draft this batch already saved for ``code`` (a re-run task), as a short answer."""
    row = (
        conn.execute(
            text(
                "SELECT version, method, stats, status FROM grid_plan "
                "WHERE community_code = :c AND stats->>'dask_batch' = :b ORDER BY version DESC LIMIT 1"
            ),
            {"c": code, "b": batch},
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    stats = dict(row["stats"] or {})
    return {
        "community": code,
        "status": stats.get("status", "ok"),
        "method": row["method"],
        "optimal": stats.get("optimal"),
        "seconds": float(stats.get("seconds") or 0.0),
        "version": int(row["version"]),
        "activated": row["status"] == "active",
        "report": {"summary": stats.get("summary", {}), "ok": stats.get("status") == "ok", "grids": [], "breaks": []},
        "findings": [],
        "notes": ["任务重跑 task re-run: the draft this batch saved before is kept"],
    }


def propose_in(conn: Connection, code: str, opts: ProposeOptions, batch: str | None = None) -> JsonDict:
    """One community's proposal in the caller's transaction (what a task runs): propose, save, tag the
    draft with ``batch``, and activate it when asked and it obeys the rules."""
    from gisgov.gridding import plans, service

    if opts.save and batch:
        _lock(conn, code)
        again = _done_before(conn, code, batch)
        if again is not None:
            return again
    res = service.propose_plan(
        conn,
        code,
        rules=opts.rules,
        lock=list(opts.lock),
        method=opts.method,
        seed=opts.seed,
        time_limit_s=opts.time_limit_s,
        closest=opts.closest,
        save=opts.save,
        author=opts.author,
        note=opts.note,
    )
    out = dict(res.to_dict())
    version = out.get("version")
    if opts.save and batch and version is not None:
        conn.execute(
            text(
                "UPDATE grid_plan SET stats = coalesce(stats, '{}'::jsonb) || jsonb_build_object('dask_batch', "
                "CAST(:b AS text)) WHERE community_code = :c AND version = :v"
            ),
            {"b": batch, "c": code, "v": int(version)},
        )
    if opts.activate:
        report = cast(JsonDict, out.get("report") or {})
        ok = bool(opts.save and version is not None and out.get("status") == "ok" and report.get("ok"))
        if ok:
            plans.activate(conn, code, int(cast(int, version)))
        out["activated"] = ok
    return out


def community_task(db: Database, code: str, opts: ProposeOptions, batch: str) -> JsonDict:
    """A Dask task: one community, on its own connection and transaction. Domain errors come back as
    ``{"status": "error", "error": …, "status_code": …}`` (the batch goes on), others raise."""
    from sqlalchemy import create_engine, pool

    eng = create_engine(db.url, poolclass=pool.NullPool)
    try:
        with eng.begin() as conn:
            return propose_in(conn, code, opts, batch)
    except GisgovError as exc:
        return {"community": code, "status": "error", "error": str(exc), "status_code": exc.status_code}
    finally:
        eng.dispose()


def propose_all(client: Any, url: str, codes: Iterable[str], opts: ProposeOptions) -> dict[str, JsonDict]:
    """Every community of ``codes`` as one task on the Dask ``client``; the answers by community code
    (one batch id for the call: a re-run task finds the draft its first run saved)."""
    batch = uuid.uuid4().hex
    db = Database(url)
    codes = list(codes)
    futures = [client.submit(community_task, db, c, opts, batch, pure=False, key=f"grids-propose-{c}") for c in codes]
    answers = cast(list[JsonDict], client.gather(futures))
    return dict(zip(codes, answers, strict=True))


__all__ = ["Database", "ProposeOptions", "community_task", "propose_all", "propose_in"]
