"""Backups 数据备份: ``gisgov db backup`` / ``gisgov db restore``.

A backup is two files side by side:

- ``gisgov-<database>-<UTC time>.dump``: ``pg_dump`` custom format (compressed, restorable table by
  table with ``pg_restore``), taken from one exported snapshot;
- ``<same name>.json``: its manifest: SHA-256 and size of the dump, the schema revision, the server and
  PostGIS versions, the row count of every table and a checksum of every geometry column, all read in
  the very snapshot the dump was taken from, and the fingerprint of the key that encrypts residents'
  ID numbers and phones.

The key itself is never in a backup (a dump plus its key is readable personal data): keep
``GISGOV_HOME/secret.key`` (or ``GISGOV_SECRET_KEY``) in a separate safe place. A restore refuses a
dump whose key fingerprint differs from the key in use, unless told to go on (the encrypted columns are
then unreadable).

A restore checks the dump's checksum, refuses a target database that already holds gisgov tables
(unless ``replace``), creates the app role the grants name when the target cluster lacks it, runs
``pg_restore`` in one transaction (all or nothing), then recounts every table and recomputes every
geometry checksum and compares them with the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

from gisgov.errors import DatabaseUnavailable, InvalidInput

FORMAT = 1
SKIP_TABLES = frozenset({"spatial_ref_sys"})


@dataclass
class Snapshot:
    """What a database holds, comparable across clusters: rows per table, checksums per geometry column."""

    tables: dict[str, int] = field(default_factory=dict)
    geometry: dict[str, str] = field(default_factory=dict)

    def differences(self, other: Snapshot) -> list[str]:
        out = []
        for t in sorted(set(self.tables) | set(other.tables)):
            a, b = self.tables.get(t), other.tables.get(t)
            if a != b:
                out.append(f"表 table {t}: 行数 rows {a} ≠ {b}")
        for g in sorted(set(self.geometry) | set(other.geometry)):
            ga, gb = self.geometry.get(g), other.geometry.get(g)
            if ga != gb:
                out.append(f"几何 geometry {g}: 校验和 checksum {ga} ≠ {gb}")
        return out


@dataclass
class Manifest:
    format: int
    created: str
    database: str
    dump_file: str
    dump_sha256: str
    dump_bytes: int
    alembic_revision: str | None
    postgres: str
    postgis: str | None
    key_fingerprint: str | None
    tables: dict[str, int]
    geometry: dict[str, str]

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(dict(self.tables), dict(self.geometry))

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}")
            return cls(**doc)
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"备份清单无法读取 the backup manifest {path} cannot be read ({exc}) (rule: backup_manifest)"
            ) from exc


def manifest_path(dump: Path) -> Path:
    return Path(dump).with_suffix(".json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- reading a database's content (psycopg connections: the dump's snapshot is shared by id) ------------
def _one(cur: psycopg.Cursor[Any]) -> Any:
    """The first column of the next row (the query returns one)."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def snapshot(cur: psycopg.Cursor[Any]) -> Snapshot:
    """Rows per table of the public schema and an order-independent checksum per geometry column
    (md5 over the sorted md5s of each row's EWKB), read with the cursor's transaction snapshot."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    names = [r[0] for r in cur.fetchall() if r[0] not in SKIP_TABLES]
    snap = Snapshot()
    for t in names:
        cur.execute(f"SELECT count(*) FROM public.{_ident(t)}")
        snap.tables[t] = int(_one(cur))
    cur.execute("SELECT to_regclass('geometry_columns') IS NOT NULL")
    if not _one(cur):  # no PostGIS here (an empty target): no geometry
        return snap
    cur.execute(
        "SELECT f_table_name, f_geometry_column FROM geometry_columns WHERE f_table_schema = 'public' ORDER BY 1, 2"
    )
    for t, col in cur.fetchall():
        if t not in snap.tables:
            continue  # a view
        cur.execute(
            f"SELECT coalesce(md5(string_agg(h, '' ORDER BY h)), '') FROM "
            f"(SELECT md5(ST_AsEWKB({_ident(col)})) AS h FROM public.{_ident(t)} WHERE {_ident(col)} IS NOT NULL) s"
        )
        snap.geometry[f"{t}.{col}"] = _one(cur)
    return snap


def _versions(cur: psycopg.Cursor[Any]) -> tuple[str, str | None, str | None]:
    cur.execute("SHOW server_version")
    pg = _one(cur)
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
    row = cur.fetchone()
    postgis = row[0] if row else None
    cur.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL")
    rev = None
    if _one(cur):
        cur.execute("SELECT version_num FROM alembic_version")
        r = cur.fetchone()
        rev = r[0] if r else None
    return pg, postgis, rev


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) → ``postgresql://…`` (libpq, pg_dump, pg_restore)."""
    head, sep, rest = url.partition("://")
    return f"{head.split('+', 1)[0]}{sep}{rest}"


def _tool(bindir: Path, name: str) -> str:
    exe = Path(bindir) / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise DatabaseUnavailable(f"未找到 {name} not found (install postgresql-client) (rule: backup_tools)")
    return found


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or "gisgov"


def backup(
    url: str,
    out_dir: Path,
    *,
    bindir: Path,
    key_fingerprint: str | None,
    now: datetime | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[Path, Manifest]:
    """Dump the database at ``url`` into ``out_dir``; returns the dump's path and its manifest. The dump
    is written under a temporary name and renamed when complete: a backup that stops half-way leaves no
    file that looks whole."""
    import psycopg

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = _database_name(url)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    dump = out_dir / f"gisgov-{name}-{stamp}.dump"
    part = dump.with_suffix(".dump.part")
    say = say or (lambda _m: None)
    try:
        conn = psycopg.connect(libpq_url(url), autocommit=False)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"数据库无法连接 cannot connect to the database: {exc}") from exc
    with conn:
        cur = conn.cursor()
        # one snapshot for the dump and the manifest: what the manifest counts is what the dump holds
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT pg_export_snapshot()")
        snap_id = _one(cur)
        pg, postgis, rev = _versions(cur)
        say("计数 counting rows and geometry checksums")
        content = snapshot(cur)
        say(f"导出 dumping to {dump.name}")
        proc = subprocess.run(
            [
                _tool(bindir, "pg_dump"),
                "--format=custom",
                f"--snapshot={snap_id}",
                f"--file={part}",
                f"--dbname={libpq_url(url)}",
            ],
            capture_output=True,
            text=True,
        )
        conn.rollback()
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        raise DatabaseUnavailable(f"pg_dump 失败 failed: {proc.stderr.strip()[-800:]}")
    os.replace(part, dump)
    manifest = Manifest(
        format=FORMAT,
        created=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        database=name,
        dump_file=dump.name,
        dump_sha256=sha256_file(dump),
        dump_bytes=dump.stat().st_size,
        alembic_revision=rev,
        postgres=pg,
        postgis=postgis,
        key_fingerprint=key_fingerprint,
        tables=content.tables,
        geometry=content.geometry,
    )
    manifest.write(manifest_path(dump))
    return dump, manifest


@dataclass
class RestoreReport:
    dump: Path
    target: str
    tables: int
    rows: int
    geometry_columns: int
    created_roles: list[str]


def verify_file(dump: Path) -> Manifest:
    """The dump's manifest, after checking the dump is the one the manifest describes."""
    dump = Path(dump)
    if not dump.is_file():
        raise InvalidInput(f"备份文件不存在 backup file {dump} not found (rule: backup_exists)")
    manifest = Manifest.read(manifest_path(dump))
    digest = sha256_file(dump)
    if digest != manifest.dump_sha256:
        raise InvalidInput(
            f"备份文件已损坏 backup {dump.name} is damaged: SHA-256 {digest[:12]}… differs from the manifest's "
            f"{manifest.dump_sha256[:12]}… (rule: backup_checksum)"
        )
    return manifest


def restore(
    dump: Path,
    target_url: str,
    *,
    bindir: Path,
    key_fingerprint: str | None,
    app_role: str,
    replace: bool = False,
    ignore_key: bool = False,
    say: Callable[[str], None] | None = None,
) -> RestoreReport:
    """Restore ``dump`` into the database at ``target_url`` and prove it: every table's row count and
    every geometry checksum must equal the manifest's. All or nothing (one transaction)."""
    import psycopg

    say = say or (lambda _m: None)
    manifest = verify_file(dump)
    if manifest.key_fingerprint and key_fingerprint != manifest.key_fingerprint and not ignore_key:
        raise InvalidInput(
            "密钥不符 the key in use is not the key this backup was made with: residents' ID numbers and "
            "phones in it would be unreadable. Put the backed-up secret.key into GISGOV_HOME (or set "
            "GISGOV_SECRET_KEY) first, or pass --ignore-key to restore anyway (rule: backup_key)"
        )
    try:
        conn = psycopg.connect(libpq_url(target_url), autocommit=True)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"目标数据库无法连接 cannot connect to the target database: {exc}") from exc
    created: list[str] = []
    with conn:
        cur = conn.cursor()
        cur.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'spatial_ref_sys'"
        )
        existing = _one(cur)
        if existing and not replace:
            raise InvalidInput(
                f"目标数据库非空 the target database already holds {existing} tables; restore into an empty "
                "database, or pass --replace to drop what is there first (rule: restore_target_empty)"
            )
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (app_role,))
        if cur.fetchone() is None:  # grants in the dump name it; same attributes as migration 0005 gives it
            cur.execute(f"CREATE ROLE {_ident(app_role)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
            created.append(app_role)
        if existing and replace:
            say("清空目标 dropping the target's public schema")
            cur.execute("DROP SCHEMA public CASCADE")
            cur.execute("CREATE SCHEMA public")
            cur.execute("DROP EXTENSION IF EXISTS postgis CASCADE")
    say(f"恢复 restoring {Path(dump).name}")
    proc = subprocess.run(
        [
            _tool(bindir, "pg_restore"),
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={libpq_url(target_url)}",
            str(dump),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise DatabaseUnavailable(
            f"pg_restore 失败，未写入任何数据 failed, nothing was restored: {proc.stderr.strip()[-800:]}"
        )
    say("核对 checking rows and geometry checksums against the manifest")
    with psycopg.connect(libpq_url(target_url)) as conn2:
        cur = conn2.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        got = snapshot(cur)
    diff = manifest.snapshot.differences(got)
    if diff:
        raise InvalidInput(
            "恢复后的数据与备份清单不符 the restored data differ from the manifest: "
            + "; ".join(diff[:10])
            + " (rule: restore_verified)"
        )
    return RestoreReport(
        dump=Path(dump),
        target=_database_name(target_url),
        tables=len(got.tables),
        rows=sum(got.tables.values()),
        geometry_columns=len(got.geometry),
        created_roles=created,
    )
