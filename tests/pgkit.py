"""A real PostgreSQL server for tests and benches: Debian's binaries, a private cluster, loopback only.

``PgServer.start(root)`` runs ``initdb`` into ``root`` and starts ``postgres``
on 127.0.0.1 and a free port, with its socket directory inside ``root``, so
it never touches the machine's own clusters or listens on a real interface.
The cluster runs as the ``postgres`` system user when the tests run as root
(PostgreSQL refuses to run as root); ``stop()`` ends that one process by its
PID. ``fresh_url()`` creates an empty database for one test and returns its
SQLAlchemy URL (psycopg 3 driver).

Set ``CAFE_TEST_PG_URL`` to an existing server's URL (a maintenance database
the user may CREATE DATABASE from) to use it instead of starting one.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["PgServer", "PgUnavailable", "pg_bin_dir", "EXTERNAL_ENV"]

EXTERNAL_ENV = "CAFE_TEST_PG_URL"
SUPERUSER = "cafe"


class PgUnavailable(RuntimeError):
    """PostgreSQL's server binaries are missing (install Debian's postgresql, as setup.sh does)."""


def pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/N/bin holding initdb and postgres."""
    versions = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin")
                       if (p / "initdb").exists() and (p / "postgres").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise PgUnavailable("PostgreSQL server binaries not found under /usr/lib/postgresql "
                            "(apt-get install postgresql; setup.sh does)")
    return versions[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@dataclass
class PgServer:
    """A running PostgreSQL (started here, or an external one named by CAFE_TEST_PG_URL)."""

    url: str                                  # the maintenance database's SQLAlchemy URL
    process: subprocess.Popen | None = None   # None for an external server
    root: Path | None = None
    log: Path | None = None
    _made: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, timeout: float = 60) -> PgServer:
        """initdb into ``root`` and start the server on 127.0.0.1 (or use CAFE_TEST_PG_URL).

        ``root`` must be reachable by the postgres user when running as root
        (e.g. a fresh ``tempfile.mkdtemp()`` under /tmp; it is chowned here).
        """
        external = os.environ.get(EXTERNAL_ENV)
        if external:
            return cls(url=external)
        bindir = pg_bin_dir()
        owner = None
        if os.geteuid() == 0:
            owner = "postgres"
            try:
                pw = pwd.getpwnam(owner)
            except KeyError:
                raise PgUnavailable("the postgres system user is missing (Debian's postgresql package makes it)") \
                    from None
        root.mkdir(parents=True, exist_ok=True)
        data, sockets, log = root / "data", root / "sock", root / "postgres.log"
        sockets.mkdir(exist_ok=True)
        if owner:
            for path in (root, sockets):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        init = subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                                         "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], owner),
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            raise PgUnavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        port = _free_port()
        argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                "-k", str(sockets), "-c", "fsync=off", "-c", "max_connections=200"]
        with log.open("wb") as out:
            if owner:
                os.chown(log, pw.pw_uid, pw.pw_gid)
            proc = subprocess.Popen(_as_owner(argv, owner), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        server = cls(url=f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres", process=proc,
                     root=root, log=log)
        deadline = time.monotonic() + timeout
        while not server._answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise PgUnavailable(f"postgres did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        return server

    def _answers(self) -> bool:
        engine = create_engine(self.url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    def fresh_url(self) -> str:
        """A new, empty database on this server; its SQLAlchemy URL."""
        name = "cafe_test_" + secrets.token_hex(6)
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        self._made.append(name)
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def stop(self) -> None:
        """Stop the server this kit started (its own process group, by PID); drop databases made on an external one."""
        if self.process is None:
            engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    for name in self._made:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            finally:
                engine.dispose()
            return
        if self.process.poll() is None:
            # SIGINT is PostgreSQL's "fast shutdown": it ends its backends and exits.
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
