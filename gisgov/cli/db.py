"""`gisgov db …`: the database (embedded private cluster or the user's own PostGIS).

Exit codes (:mod:`gisgov.cli.common`): 0 done, 3 the database is not running / cannot be reached.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gisgov.cli import common

app = common.group("数据库 Database: start/stop the embedded PostGIS cluster, migrate the schema.")
console = common.LazyConsole()


def _external() -> bool:
    from gisgov.config import get_settings

    return bool(get_settings().database_url)


@app.command()
def up() -> None:
    """启动 Start the embedded cluster (idempotent) and create the database with PostGIS."""
    from gisgov.db import migrate
    from gisgov.db.engine import database_url, embedded_cluster
    from gisgov.errors import DatabaseUnavailable

    if _external():
        console.print(f"[cyan]使用外部数据库 Using GISGOV_DATABASE_URL[/]: {_redact(database_url())}")
        return
    cluster = embedded_cluster()
    was_running = cluster.status().running
    try:
        st = cluster.up(say=common.say)
    except DatabaseUnavailable as exc:
        raise common.fail(str(exc), common.EXIT_DATABASE) from None
    state = "已在运行 already running" if was_running else "已启动 started"
    console.print(f"[green]{state}[/] pid={st.pid} port={st.port} data={st.data_dir}")
    url = st.url or cluster.url()
    problem = migrate.schema_problem(url)
    if problem:  # a hint, not an error: `db up` only starts the server
        common.say(f"提示 note: {problem}")
    # Never the password: `gisgov db url --show-password` prints the full URL on request.
    typer.echo(_redact(url))


@app.command()
def down() -> None:
    """停止 Stop the embedded cluster cleanly."""
    from gisgov.db.engine import embedded_cluster

    if _external():
        console.print("[yellow]GISGOV_DATABASE_URL is set: gisgov does not manage that server.[/]")
        return
    stopped = embedded_cluster().down()
    console.print("[green]已停止 stopped[/]" if stopped else "未运行 not running")


@app.command()
def status() -> None:
    """状态 Show whether the database is running and where (exit 3 when it is not running)."""
    from gisgov.db.engine import database_url, embedded_cluster

    if _external():
        console.print(f"external: {_redact(database_url())}")
        return
    st = embedded_cluster().status()
    if st.running:
        console.print(f"[green]运行中 running[/] pid={st.pid} port={st.port} data={st.data_dir}")
    elif st.initialized:
        console.print(f"[yellow]已停止 stopped[/] data={st.data_dir}")
        raise typer.Exit(common.EXIT_DATABASE)
    else:
        console.print(f"未初始化 not initialised (run `gisgov db up`) data={st.data_dir}")
        raise typer.Exit(common.EXIT_DATABASE)


@app.command()
def url(
    show_password: bool = typer.Option(
        False,
        "--show-password",
        help="打印含密码的完整连接串 Print the full URL including the password (keep it secret).",
    ),
) -> None:
    """连接串 Print the SQLAlchemy URL of the gisgov database (password hidden unless --show-password)."""
    from gisgov.db.engine import database_url
    from gisgov.errors import DatabaseUnavailable

    try:
        u = database_url()
    except DatabaseUnavailable as exc:
        raise common.fail(f"数据库不可用 database unavailable: {exc}", common.EXIT_DATABASE) from None
    typer.echo(u if show_password else _redact(u))


@app.command("migrate")
def migrate_cmd(revision: str = typer.Argument("head", help="Target revision (head, base, or an id).")) -> None:
    """迁移 Upgrade (or downgrade to `base`) the schema through Alembic."""
    from gisgov.db import migrate

    u = common.database_url(migrated=False)
    if revision == "base" or revision.startswith("-"):
        migrate.downgrade(u, revision)
    else:
        migrate.upgrade(u, revision)
    console.print(f"[green]schema at[/] {migrate.current(u)}")


def _redact(u: str) -> str:
    """The URL with its password replaced by ``***``."""
    from sqlalchemy.engine import make_url

    return make_url(u).render_as_string(hide_password=True)


def _key_fingerprint() -> str:
    """A fingerprint of the personal-data key (an HMAC of a fixed text: says nothing about the key)."""
    from gisgov.security.pii import Vault

    return Vault.from_settings().digest("gisgov backup key fingerprint").hex()[:16]


@app.command()
def backup(
    out: Path = typer.Option(None, "--out", help="备份目录 Folder for the backup (default: GISGOV_HOME/backups)."),
) -> None:
    """备份 Back up the database: a pg_dump (custom format) and its manifest (checksums, row counts).

    The key of residents' ID numbers and phones is NOT in the backup: keep GISGOV_HOME/secret.key (or
    GISGOV_SECRET_KEY) in a separate safe place; a restore needs it."""
    from gisgov.config import get_settings
    from gisgov.db import backup as bk
    from gisgov.db.cluster import find_bindir
    from gisgov.errors import GisgovError

    settings = get_settings()
    url = common.database_url()
    folder = out or settings.home_abs / "backups"
    try:
        dump, manifest = bk.backup(
            url, folder, bindir=find_bindir(settings.pg_bindir), key_fingerprint=_key_fingerprint(), say=common.say
        )
    except GisgovError as exc:
        raise common.error(exc) from None
    rows = sum(manifest.tables.values())
    console.print(f"[green]已备份 backed up[/] {dump}  ({manifest.dump_bytes / 1e6:.1f} MB)")
    console.print(
        f"清单 manifest {bk.manifest_path(dump).name}: {len(manifest.tables)} 表 tables, {rows} 行 rows, "
        f"{len(manifest.geometry)} 几何列 geometry columns, SHA-256 {manifest.dump_sha256[:16]}…"
    )
    console.print(
        "[yellow]密钥不在备份中 the personal-data key is not in the backup:[/] keep secret.key "
        f"(fingerprint {manifest.key_fingerprint}) apart from it"
    )


@app.command()
def restore(
    dump: Path = typer.Argument(..., help="备份文件 The .dump file (its .json manifest beside it)."),
    into: str = typer.Option(
        None, "--into", help="目标数据库 Target database URL (default: the gisgov database, which must be empty)."
    ),
    replace: bool = typer.Option(False, "--replace", help="清空目标 Drop what the target holds first."),
    ignore_key: bool = typer.Option(
        False, "--ignore-key", help="密钥不符也恢复 Restore although the key differs (ciphertexts unreadable)."
    ),
) -> None:
    """恢复 Restore a backup into an empty database, all or nothing, then verify row counts and geometry
    checksums against its manifest."""
    from gisgov.config import get_settings
    from gisgov.db import backup as bk
    from gisgov.db.cluster import find_bindir
    from gisgov.errors import GisgovError

    settings = get_settings()
    target = into or common.database_url(migrated=False)
    try:
        rep = bk.restore(
            dump,
            target,
            bindir=find_bindir(settings.pg_bindir),
            key_fingerprint=_key_fingerprint(),
            app_role=settings.app_role,
            replace=replace,
            ignore_key=ignore_key,
            say=common.say,
        )
    except GisgovError as exc:
        raise common.error(exc) from None
    console.print(
        f"[green]已恢复并核对 restored and verified[/] {rep.tables} 表 tables, {rep.rows} 行 rows, "
        f"{rep.geometry_columns} 几何列 geometry columns into {rep.target}"
    )
    if rep.created_roles:
        console.print(f"创建角色 created role(s): {', '.join(rep.created_roles)}")
