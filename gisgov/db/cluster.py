"""The embedded private PostgreSQL + PostGIS cluster.

When no ``GISGOV_DATABASE_URL`` is given, gisgov runs its own cluster in
``GISGOV_HOME/pg``: a unix socket inside that folder plus 127.0.0.1 on a free
port, password (scram) authentication on TCP, trust only on the private socket.

PostgreSQL refuses to run as root; when gisgov runs as root the server runs as
the unprivileged ``postgres`` system user (created by the Debian package), which
then owns the data and socket folders.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from gisgov.errors import DatabaseUnavailable
from gisgov.privatefiles import write_private

SUPERUSER = "gisgov"
APT_PACKAGES = ("postgresql-15", "postgresql-15-postgis-3", "postgresql-15-pgrouting")
# Given at every start, so they also apply to clusters initialised by older versions (whose
# postgresql.conf said synchronous_commit = off: a crash could lose the last ~0.6 s of commits that
# had already been reported as done).
SERVER_OPTIONS = "-c synchronous_commit=on"
APT_COMMAND = "apt-get update && apt-get install -y " + " ".join(APT_PACKAGES)


def find_bindir(explicit: Path | None = None) -> Path:
    """Directory holding ``initdb``/``pg_ctl``/``postgres``; newest version wins."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
            candidates.append(Path(out))
        except (subprocess.CalledProcessError, OSError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise DatabaseUnavailable(
        "PostgreSQL server binaries not found (looked at pg_config --bindir and /usr/lib/postgresql/*/bin). "
        f"Install them with: {APT_COMMAND}"
    )


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def postgis_available(bindir: Path) -> bool:
    """True when the PostGIS extension files are installed for this server."""
    try:
        sharedir = subprocess.run(
            [str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sharedir = str(bindir.parent.parent.parent.parent / "share" / "postgresql" / bindir.parent.name)
    return Path(sharedir, "extension", "postgis.control").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:``port``. SO_REUSEADDR as the server itself binds: the
    TIME_WAIT remains of connections to a stopped cluster must not make its recorded port look taken
    (the cluster would come back on another port and strand every running app)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ClusterStatus:
    running: bool
    initialized: bool
    pid: int | None
    port: int | None
    url: str | None
    data_dir: Path


class EmbeddedCluster:
    """A private PostgreSQL cluster living in ``home/pg``."""

    def __init__(self, home: Path, db_name: str = "gisgov", bindir: Path | None = None):
        self.home = Path(home).expanduser().resolve()
        self.db_name = db_name
        self._bindir = bindir
        self.state_file = self.home / "pg-state.json"
        self.root = Path(self._state().get("root") or self.home / "pg")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def _choose_root(self) -> Path:
        """``home/pg``; as root, if the postgres user cannot reach it (e.g. a checkout under /root),
        a folder under /var/lib/gisgov named after the home, recorded in the state file."""
        preferred = self.home / "pg"
        if not self.run_as:
            return preferred
        preferred.mkdir(parents=True, exist_ok=True)
        self._chown(preferred)
        probe = subprocess.run(["runuser", "-u", self.run_as, "--", "test", "-w", str(preferred)])
        if probe.returncode == 0:
            return preferred
        import hashlib

        fallback = Path("/var/lib/gisgov") / hashlib.sha1(str(self.home).encode()).hexdigest()[:16]
        fallback.mkdir(parents=True, exist_ok=True)
        os.chmod(fallback.parent, 0o755)
        return fallback

    # -- paths and users -------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def run_as(self) -> str | None:
        """System user that runs the server (``postgres`` when we are root)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError as exc:
            raise DatabaseUnavailable(
                "running as root but there is no 'postgres' system user to run the server; "
                f"install the Debian package: {APT_COMMAND}"
            ) from exc
        return "postgres"

    def _cmd(self, args: list[str]) -> list[str]:
        user = self.run_as
        return ["runuser", "-u", user, "--", *args] if user else args

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._cmd(args), capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            raise DatabaseUnavailable(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def _chown(self, path: Path) -> None:
        user = self.run_as
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- state -----------------------------------------------------------
    def _state(self) -> dict:
        if self.state_file.exists():
            if self.state_file.stat().st_mode & 0o077:  # written by an older version: tighten to 0600
                os.chmod(self.state_file, 0o600)
            return json.loads(self.state_file.read_text())
        return {}

    def _save_state(self, state: dict) -> None:
        """The state file holds the superuser password: written 0600 from the start, replaced atomically."""
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        write_private(tmp, json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self.state_file.exists()

    def url(self, db_name: str | None = None) -> str:
        st = self._state()
        if not st:
            raise DatabaseUnavailable(f"embedded cluster not initialised in {self.root}; run `gisgov db up`")
        return (
            f"postgresql+psycopg://{SUPERUSER}:{quote(st['password'], safe='')}@127.0.0.1:{st['port']}/"
            f"{db_name or self.db_name}"
        )

    def server_pid(self) -> int | None:
        """PID of a live postmaster for this data folder, else None (a stale pid file is removed)."""
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return None
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (ValueError, IndexError, OSError):
            pid = None
        if pid and _alive(pid) and _is_postgres(pid):
            return pid
        # Stale after a crash: the process is gone (or the pid was reused).
        pidfile.unlink(missing_ok=True)
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        return None

    def status(self) -> ClusterStatus:
        pid = self.server_pid() if self.data_dir.exists() else None
        st = self._state()
        return ClusterStatus(
            running=pid is not None,
            initialized=self.initialized,
            pid=pid,
            port=st.get("port"),
            url=self.url() if st else None,
            data_dir=self.data_dir,
        )

    # -- lifecycle -------------------------------------------------------
    def init(self) -> None:
        if self.initialized:
            return
        if not postgis_available(self.bindir):
            raise DatabaseUnavailable(f"PostGIS is not installed for {self.bindir}. Install it with: {APT_COMMAND}")
        self.home.mkdir(parents=True, exist_ok=True)
        self.root = self._choose_root()
        if self.data_dir.exists():  # half-initialised earlier: start clean
            shutil.rmtree(self.data_dir)
        for d in (self.root, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            self._chown(d)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "initpw"
        pwfile.unlink(missing_ok=True)
        write_private(pwfile, password)
        self._chown(pwfile)
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write(
                "\n# gisgov embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "shared_buffers = 256MB\nwork_mem = 32MB\nmaintenance_work_mem = 256MB\n"
                "max_wal_size = 2GB\nmax_connections = 200\n"
            )
        self._save_state({"port": free_port(), "password": password, "root": str(self.root)})

    def leftover_processes(self) -> list[int]:
        """PIDs of server processes still attached to this data folder although no postmaster runs:
        the backends of a crashed (kill -9) postmaster, which keep its shared memory in use until they
        exit. Every PostgreSQL process works in the data folder, so they are found by their cwd."""
        if self.server_pid():
            return []
        data = os.path.realpath(self.data_dir)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "cwd") == data and _is_postgres(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to inspect
                continue
        return sorted(found)

    def wait_for_leftovers(self, grace: float = 5, terminate: float = 10, say=None) -> None:
        """After a crash: wait up to ``grace`` seconds for the old backends to notice their postmaster is
        gone and exit, then ask those still running to stop (SIGTERM, as pg_terminate_backend would;
        SIGKILL after ``terminate`` more seconds). Raises DatabaseUnavailable (one line) if any remain."""
        left = self.leftover_processes()
        if not left:
            return
        if say:
            say(
                f"等待崩溃前的数据库进程退出 waiting for {len(left)} server process(es) of a crashed server to exit "
                f"(pids {', '.join(map(str, left))}; up to {int(grace + terminate)} s)"
            )
        deadline = time.monotonic() + grace
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = self.leftover_processes()
        for sig, wait in ((signal.SIGTERM, terminate * 0.7), (signal.SIGKILL, terminate * 0.3)):
            if not left:
                break
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while left and time.monotonic() < deadline:
                time.sleep(0.2)
                left = self.leftover_processes()
        if left:
            raise DatabaseUnavailable(
                f"崩溃前的数据库进程仍在运行 server processes of a crashed server are still running "
                f"(pids {', '.join(map(str, left))}): stop them, then run `gisgov db up` again"
            )

    def start(self, timeout: float = 60, say=None) -> None:
        if self.server_pid():
            return
        self.wait_for_leftovers(say=say)
        st = self._state()
        if not port_is_free(st["port"]):
            st["port"] = free_port()
            self._save_state(st)
        self.log_file.touch(exist_ok=True)
        self._chown(self.log_file)
        size = self.log_file.stat().st_size
        proc = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                f"-p {st['port']} {SERVER_OPTIONS}",
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            check=False,
        )
        if proc.returncode != 0:
            raise DatabaseUnavailable(
                f"数据库无法启动 the database server did not start: {self._log_reason(size)} (log: {self.log_file})"
            )

    def _log_reason(self, offset: int) -> str:
        """The first FATAL/PANIC line the server logged since ``offset`` (without its timestamp)."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            for level in ("FATAL:", "PANIC:"):
                if level in line:
                    return line[line.index(level) :].strip()
        return "pg_ctl failed, see the log"

    def ensure_database(self, db_name: str | None = None) -> None:
        """Create the database (if missing) with the PostGIS extension."""
        import psycopg

        name = db_name or self.db_name
        st = self._state()
        conninfo = dict(host="127.0.0.1", port=st["port"], user=SUPERUSER, password=st["password"], dbname="postgres")
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
        with psycopg.connect(**{**conninfo, "dbname": name}, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def up(self, say=None) -> ClusterStatus:
        """Initialise if needed, start if stopped (after a crash: once the old server processes are
        gone), create the database. Idempotent. ``say(message)`` reports a wait."""
        self.init()
        self.start(say=say)
        self.ensure_database()
        return self.status()

    def down(self, timeout: float = 60) -> bool:
        """Stop the server cleanly (fast shutdown). Returns False if it was not running."""
        if not self.server_pid():
            return False
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]
        )
        deadline = time.time() + timeout
        while self.server_pid() and time.time() < deadline:
            time.sleep(0.1)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postgres(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (non-Linux): trust the pid
    return b"postgres" in cmd
