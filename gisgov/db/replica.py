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

import logging
import os
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from gisgov.db.cluster import SUPERUSER, EmbeddedCluster, free_port
from gisgov.errors import DatabaseUnavailable

_log = logging.getLogger(__name__)

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


# ---- routing reads by measured lag ------------------------------------------------------------------------

#: default limit of the lag gate (seconds behind the primary); ``GISGOV_READ_MAX_LAG_S``
READ_MAX_LAG_S = 5.0
#: how long a measurement is reused (one measurement per second, not a query per request)
LAG_TTL_S = 1.0
#: samples of the primary's WAL position kept to date the replica's position (seconds)
_HISTORY_S = 600.0


@dataclass(frozen=True)
class Lag:
    """One measurement of the replica's replay lag. ``bytes``: WAL the primary wrote that the replica has
    not replayed; ``seconds``: how long ago the primary first wrote past what the replica has replayed (0
    when it has replayed everything); ``error``: why it could not be measured (then both are None)."""

    at: float  # time.monotonic() of the measurement
    bytes: int | None = None
    seconds: float | None = None
    error: str | None = None


class LagGate:
    """Reads go to the replica only while its replay lag is within limits (:meth:`allows_reads`).

    Measured with two small queries, at most once per ``ttl_s`` per process: the primary's
    ``pg_current_wal_lsn()`` and the replica's ``pg_last_wal_replay_lsn()`` (bytes behind), and
    ``now() - pg_last_xact_replay_timestamp()`` on the replica. That last figure alone is wrong on an idle
    primary (no commit for ten minutes: a fully caught-up replica would look ten minutes behind), so the
    seconds are taken from the primary's WAL positions this gate has seen: caught up (replayed ≥ the
    primary's position) is 0 s; behind, the lag is the time since the first sample at which the primary
    had written past the replayed position (good to ``ttl_s``). Only when the gate has no sample from
    before the replica fell behind (it started behind) is the replay timestamp used, an upper bound.

    The gate is closed (reads on the primary) when the lag exceeds ``max_lag_s`` (or ``max_lag_bytes``
    when given), when it cannot be measured (the replica or the primary unreachable), and before the
    first measurement. With ``background=True`` (the app's setting) :meth:`allows_reads` never waits on
    the database: a stale measurement is renewed in a thread and the last verdict is given meanwhile; a
    verdict older than ``max_age_s`` counts as unknown (closed). ``background=False`` measures in the
    calling thread (tests, scripts).

    Hook for the app (``gisgov.api.deps.primary_reason``): ``if not gate.allows_reads(): return gate.reason``.
    """

    def __init__(
        self,
        primary: Engine,
        replica: Engine,
        *,
        max_lag_s: float | None = READ_MAX_LAG_S,
        max_lag_bytes: int | None = None,
        ttl_s: float = LAG_TTL_S,
        max_age_s: float | None = None,
        background: bool = True,
    ):
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.max_lag_bytes = max_lag_bytes
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s if max_age_s is not None else max(5 * ttl_s, 3.0)
        self.background = background
        self.last: Lag | None = None
        self._history: deque[tuple[float, int]] = deque()  # (monotonic time, primary WAL position)
        self._lock = threading.Lock()
        self._measuring = threading.Lock()
        self._closed_logged = False

    # -- measuring --------------------------------------------------------------------------------------

    def measure(self) -> Lag:
        """Measure now (two queries), remember and return the result."""
        from sqlalchemy import text

        now = time.monotonic()
        try:
            with self.primary.connect() as pc:
                primary_lsn = lsn_int(pc.execute(text("SELECT pg_current_wal_lsn()::text")).scalar())
            with self.replica.connect() as rc:
                row = rc.execute(
                    text(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                        "extract(epoch FROM now() - pg_last_xact_replay_timestamp())"
                    )
                ).one()
        except Exception as exc:  # unreachable, refused, timed out: unknown lag, reads on the primary
            lag = Lag(now, error=(str(exc).splitlines() or [type(exc).__name__])[0][:200] or type(exc).__name__)
        else:
            lag = self._lag(now, primary_lsn, bool(row[0]), lsn_int(row[1]), row[2])
        with self._lock:
            self.last = lag
        return lag

    def _lag(self, now: float, primary: int | None, recovering: bool, replayed: int | None, ts_age: Any) -> Lag:
        if primary is None:
            return Lag(now, error="primary WAL position unknown")
        if not recovering or replayed is None:
            return Lag(now, error="not a standby (pg_is_in_recovery() is false): promoted or misconfigured")
        with self._lock:
            self._history.append((now, primary))
            while self._history and self._history[0][0] < now - _HISTORY_S:
                self._history.popleft()
            history = list(self._history)
        behind = max(primary - replayed, 0)
        if behind == 0:
            return Lag(now, 0, 0.0)
        # the first sample at which the primary had written past the replayed position, if an earlier one
        # shows it not yet past (else the gate started behind: the replay timestamp's age, an upper bound)
        since = next((t for t, lsn in history if lsn > replayed), now)
        if history[0][1] > replayed:
            seconds = float(ts_age) if ts_age is not None else now - history[0][0]
        else:
            seconds = now - since
        return Lag(now, behind, round(max(seconds, 0.0), 3))

    def _refresh(self) -> None:
        try:
            self.measure()
        finally:
            self._measuring.release()

    def current(self) -> Lag | None:
        """The last measurement, renewed when older than ``ttl_s`` (in a thread when ``background``)."""
        lag = self.last
        if lag is not None and time.monotonic() - lag.at < self.ttl_s:
            return lag
        if not self._measuring.acquire(blocking=False):
            return lag  # someone is measuring: the last verdict meanwhile
        if self.background:
            threading.Thread(target=self._refresh, name="gisgov-replica-lag", daemon=True).start()
            return lag
        self._refresh()
        return self.last

    # -- the verdict ------------------------------------------------------------------------------------

    def verdict(self, lag: Lag | None) -> str | None:
        """Why reads must not go to the replica with this measurement; None = they may."""
        if lag is None:
            return "replica lag not measured yet"
        if time.monotonic() - lag.at > self.max_age_s:
            return "replica lag unknown (measurement too old)"
        if lag.error is not None:
            return f"replica lag unknown: {lag.error}"
        if self.max_lag_s is not None and lag.seconds is not None and lag.seconds > self.max_lag_s:
            return f"replica lag {lag.seconds:.1f} s > {self.max_lag_s:g} s"
        if self.max_lag_bytes is not None and lag.bytes is not None and lag.bytes > self.max_lag_bytes:
            return f"replica lag {lag.bytes} bytes > {self.max_lag_bytes} bytes"
        return None

    @property
    def reason(self) -> str | None:
        """Why reads go to the primary now (the reason for ``primary_reason``); None while they may not."""
        return self.verdict(self.last)

    def allows_reads(self) -> bool:
        """True when the replica's measured lag is within the limits (reads may go to it)."""
        why = self.verdict(self.current())
        if why is not None and not self._closed_logged:
            self._closed_logged = True
            _log.warning("只读副本延迟过大，读请求改由主库处理 reads go to the primary: %s", why)
        elif why is None and self._closed_logged:
            self._closed_logged = False
            _log.warning("只读副本已追上 read replica caught up; reads go to it again")
        return why is None

    def status(self) -> dict[str, Any]:
        """For ``/health``: the last measurement and whether reads go to the replica."""
        lag = self.last
        why = self.verdict(lag)
        return {
            "lag_bytes": None if lag is None else lag.bytes,
            "lag_s": None if lag is None else lag.seconds,
            "max_lag_s": self.max_lag_s,
            "reads": "replica" if why is None else "primary",
            "reason": why,
        }
