"""Streaming read replicas: a hot standby of an embedded cluster, and the app's login on a replica.

A standby is a byte-for-byte copy of the primary's cluster (``pg_basebackup -R``: the copy carries
``standby.signal`` and ``primary_conninfo``) that replays the primary's WAL as it streams in and answers
read-only queries meanwhile (``hot_standby``). Roles, passwords, row-level security policies and data are
the primary's: the web app signs in to the replica exactly as to the primary (the app role and its
password), and ``SET``/``set_config`` (the request scope) work in its read-only transactions.

Used by the tests and by hand (see docs/scaling.md, section 4)::

    from gisgov.db.cluster import EmbeddedCluster
    from gisgov.db.replica import make_standby
    standby = make_standby(EmbeddedCluster(home), replica_home)  # copies, configures, starts
    print(standby.url())                                         # GISGOV_READ_DATABASE_URL

The standby's folder layout is an ordinary :class:`~gisgov.db.cluster.EmbeddedCluster` (``home/pg``,
``home/pg-state.json``), so ``start()``, ``down()`` and ``status()`` work on it as on the primary.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from gisgov.db.cluster import SUPERUSER, EmbeddedCluster, free_port
from gisgov.errors import DatabaseUnavailable

#: appended to the standby's postgresql.conf (the primary's settings come along in the copy)
STANDBY_CONF = (
    "\n# gisgov read replica (hot standby)\n"
    "hot_standby = on\n"
    # the standby tells the primary which rows its queries still read: VACUUM on the primary then does not
    # remove them, and long reads are not cancelled with 'conflict with recovery'
    "hot_standby_feedback = on\n"
    "max_standby_streaming_delay = 30s\n"
)


def make_standby(primary: EmbeddedCluster, home: Path, *, start: bool = True, timeout: float = 120) -> EmbeddedCluster:
    """Make ``home`` a hot standby of the running ``primary`` and (by default) start it on a port of its own.

    Runs ``pg_basebackup -R -X stream`` as the primary's server user (``postgres`` when we are root, as
    :class:`EmbeddedCluster` does) over the primary's private unix socket, as the cluster superuser (trust
    on that socket; PostgreSQL 15's default ``pg_hba.conf`` allows local replication connections). The
    copy's ``primary_conninfo`` therefore also uses the socket: the standby must run on the same machine.
    For a standby on another machine, give a TCP replication login in ``pg_hba.conf`` and run
    ``pg_basebackup -h <primary> -U <user> -R`` there (docs/scaling.md)."""
    if not primary.server_pid():
        raise DatabaseUnavailable(f"主库未运行 the primary cluster in {primary.root} is not running")
    standby = EmbeddedCluster(home, primary.db_name, primary._bindir)
    if standby.initialized:
        raise DatabaseUnavailable(f"副本目录已存在 {standby.data_dir} already holds a cluster")
    standby.home.mkdir(parents=True, exist_ok=True)
    standby.root = standby._choose_root()
    if standby.data_dir.exists():  # a half-made copy of an earlier attempt
        shutil.rmtree(standby.data_dir)
    for d in (standby.root, standby.socket_dir):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        standby._chown(d)
    pst = primary._state()
    standby._run(
        [
            str(primary.bindir / "pg_basebackup"),
            "-h",
            str(primary.socket_dir),
            "-p",
            str(pst["port"]),
            "-U",
            SUPERUSER,
            "-D",
            str(standby.data_dir),
            "-R",  # standby.signal + primary_conninfo in postgresql.auto.conf
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-password",
        ]
    )
    conf = standby.data_dir / "postgresql.conf"
    text = conf.read_text()
    # the copy listens on its own socket folder (the port is given at start, as for the primary)
    text = text.replace(f"unix_socket_directories = '{primary.socket_dir}'", "")
    text += f"unix_socket_directories = '{standby.socket_dir}'\n" + STANDBY_CONF
    conf.write_text(text)
    for stale in ("postmaster.pid", "postmaster.opts"):
        (standby.data_dir / stale).unlink(missing_ok=True)
    # same superuser and password as the primary (the copy holds the same roles)
    standby._save_state({"port": free_port(), "password": pst["password"], "root": str(standby.root)})
    if start:
        standby.start(timeout=timeout)
    return standby


def in_recovery(url: str) -> bool:
    """True when the server at ``url`` is a standby (replaying WAL)."""
    import psycopg

    from gisgov.db.engine import psycopg_conninfo

    with psycopg.connect(psycopg_conninfo(url), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])


def lsn_int(lsn: str | None) -> int | None:
    """A WAL position ``'16/B374D848'`` as one integer (byte position), None for None."""
    if not lsn:
        return None
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def wait_caught_up(primary_url: str, replica_url: str, timeout: float = 30) -> int:
    """Wait until the replica has replayed everything the primary wrote up to now; returns the
    milliseconds waited. Raises DatabaseUnavailable after ``timeout`` seconds."""
    import psycopg

    from gisgov.db.engine import psycopg_conninfo

    with psycopg.connect(psycopg_conninfo(primary_url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        target = lsn_int(row[0] if row else None) or 0
    t0 = time.monotonic()
    with psycopg.connect(psycopg_conninfo(replica_url), autocommit=True) as conn:
        while True:
            got = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
            done = lsn_int(got[0] if got else None) or 0
            if done >= target:
                return int((time.monotonic() - t0) * 1000)
            if time.monotonic() - t0 > timeout:
                raise DatabaseUnavailable(f"副本未追上主库 the replica did not catch up within {timeout:g} s")
            time.sleep(0.05)


def replica_app_url(read_url: str, app_url: str) -> str:
    """The URL the web app reads the replica with: the replica's host, port, database and options, signed
    in as the app's own login (``app_url``'s user and password: a physical replica holds the primary's
    roles). A read URL naming that same user keeps its own password if it gives one."""
    from gisgov.db.engine import sqlalchemy_url

    read = make_url(sqlalchemy_url(read_url))
    app = make_url(sqlalchemy_url(app_url))
    if read.username == app.username and read.password:
        return read.render_as_string(hide_password=False)
    return read.set(username=app.username, password=app.password).render_as_string(hide_password=False)
