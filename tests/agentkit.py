"""A real inspector device (``cafe-agent``) for tests and benches.

Two ways to have one, each done one way only:

* in process: ``prepare_agent`` (a data directory with reportkit's probe
  enrolled) and ``make_agent`` (the app on it, with a test client);
* as the officer has it: ``setup_agent`` (the ``cafe-agent`` CLI: init,
  officers with 0600 password files, an enrolled probe) and ``served_agent``
  (``cafe-agent serve`` on 127.0.0.1 while a block runs, optionally run
  through an argv wrapper such as a lab's ``exec_argv``; stopped by its own
  handle whatever happens).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from agent_api.app import create_app, open_agent
from agent_api.auth import COOKIE_NAME, create_officer, enroll_probe, hash_password, start_session
from agent_api.db import AuditEntry, Officer, Report
from agent_api.settings import Settings
from tests.conftest import VENV_BIN
from tests.reportkit import make_probe_key

if TYPE_CHECKING:  # the test client is imported where it is used: benches never need it
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

__all__ = ["AGENT", "PASSWORD", "PROBE_ID", "Agent", "agent_cli", "free_port", "make_agent", "password_hash",
           "officers_app", "prepare_agent", "served_agent", "setup_agent", "stop_process"]

AGENT = VENV_BIN / "cafe-agent"
PROBE_ID = "probe-test"  # the probe id reportkit's payloads carry
PASSWORD = "correct horse battery"
Argv = list[str]


@lru_cache(maxsize=1)
def password_hash() -> str:
    """One real argon2id hash of PASSWORD for every officer of every test: hashing costs ~0.1 s."""
    return hash_password(PASSWORD)


# --- in process ---------------------------------------------------------------------------------------------------

@dataclass
class Agent:
    """A created app on a fresh data directory, with one enrolled probe."""

    app: FastAPI
    settings: Settings
    client: TestClient
    probe_key: Ed25519PrivateKey

    def count(self, model: type = Report) -> int:
        with self.app.state.sessions() as db:
            return db.execute(select(func.count()).select_from(model)).scalar_one()

    def audit(self, action: str) -> list[AuditEntry]:
        with self.app.state.sessions() as db:
            return list(db.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())

    def submit(self, body: bytes) -> httpx.Response:
        return self.client.post("/v1/reports", content=body)

    def officer(self, username: str, badge: str) -> TestClient:
        """A client logged in (session cookie) as a new officer whose password is PASSWORD."""
        from fastapi.testclient import TestClient

        with self.app.state.sessions() as db:
            officer = Officer(username=username, display_name=f"警官{username}", badge=badge,
                              password_hash=password_hash(), active=True, created_at=self.settings.now())
            db.add(officer)
            db.commit()
            token, _csrf = start_session(db, officer)
        client = TestClient(self.app)
        client.cookies.set(COOKIE_NAME, token)
        return client


def prepare_agent(root: Path, db_url: str | None = None) -> tuple[Settings, Ed25519PrivateKey]:
    """A data directory under ``root`` (database: ``db_url``, else SQLite in it) with the reportkit probe enrolled.

    Returns its settings and the probe key.
    """
    settings = Settings(data_dir=root / "agent", db_url=db_url)
    priv, pub = make_probe_key(root)
    opened = open_agent(settings)
    with opened.sessions() as db:
        enroll_probe(db, PROBE_ID, pub.read_text(), "test probe")
    opened.engine.dispose()
    return settings, priv


def officers_app(root: Path, db_url: str | None, officers: Mapping[str, tuple[str, str, str]],
                 label: str = "马尾-1号") -> tuple[FastAPI, Ed25519PrivateKey]:
    """The app on a data directory under ``root`` (database ``db_url``, else SQLite) with ``officers``
    (``username: (name, badge, password)``) and the reportkit probe enrolled; returns it and the probe key."""
    priv, pub = make_probe_key(root)
    app = create_app(Settings(data_dir=root / "data", db_url=db_url))
    with app.state.sessions() as db:
        for username, (name, badge, password) in officers.items():
            create_officer(db, username, name, badge, password)
        enroll_probe(db, PROBE_ID, pub.read_text(), label)
    return app, priv


def make_agent(tmp_path: Path, db_url: str | None = None) -> Agent:
    """A fresh agent app with the reportkit probe enrolled (as by the local CLI), on ``db_url`` or SQLite."""
    from fastapi.testclient import TestClient

    settings, priv = prepare_agent(tmp_path, db_url)
    app = create_app(settings)
    return Agent(app=app, settings=settings, client=TestClient(app), probe_key=priv)


# --- as a separate process ----------------------------------------------------------------------------------------

def agent_cli(*args: str) -> str:
    """Run ``cafe-agent ARGS``; it must succeed. Returns what it printed."""
    proc = subprocess.run([str(AGENT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def setup_agent(data: Path, *, probe_pub: Path | None = None, probe_id: str = PROBE_ID, label: str = "",
                officers: Mapping[str, tuple[str, str, str]] | None = None) -> None:
    """A data directory made through the CLI, as an officer makes one.

    ``cafe-agent init``; then ``add-officer`` for each ``username: (name, badge,
    password)`` of ``officers``, the password in a 0600 file beside ``data``;
    then ``enroll-probe`` of ``probe_pub`` as ``probe_id`` if given.
    """
    where = ["--data", str(data)]
    agent_cli("init", *where)
    for username, (name, badge, password) in (officers or {}).items():
        secret = data.parent / f"{username}.pass"
        secret.touch(mode=0o600)
        secret.chmod(0o600)
        secret.write_text(password + "\n")
        agent_cli("add-officer", username, "--name", name, "--badge", badge, "--password-file", str(secret), *where)
    if probe_pub is not None:
        agent_cli("enroll-probe", str(probe_pub), "--probe-id", probe_id, "--label", label, *where)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _key_answers(wrap: Callable[[Argv], Argv] | None) -> Callable[[str], bool]:
    """Whether GET URL/v1/agent/key answers 200, asked from where the server runs (through ``wrap``)."""
    if wrap is None:
        def ready(url: str) -> bool:
            try:
                return httpx.get(url + "/v1/agent/key", timeout=1, trust_env=False).status_code == 200
            except httpx.TransportError:
                return False
    else:
        def ready(url: str) -> bool:
            ask = ("import httpx, sys; "
                   f"sys.exit(httpx.get({url + '/v1/agent/key'!r}, timeout=1, trust_env=False).status_code != 200)")
            try:
                return subprocess.run(wrap([sys.executable, "-c", ask]), capture_output=True,
                                      timeout=30).returncode == 0
            except subprocess.TimeoutExpired:
                return False
    return ready


def stop_process(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop one process by its handle: terminate, wait, then kill."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def served_agent(data: Path, log_path: Path, *, port: int | None = None,
                 wrap: Callable[[Argv], Argv] | None = None, ready: Callable[[str], bool] | None = None,
                 timeout: float = 30, host: str = "127.0.0.1") -> Iterator[str]:
    """``cafe-agent serve`` on ``host`` (127.0.0.1, or an address inside a lab namespace) while the block
    runs; yields its URL.

    ``port``: a free one by default. ``wrap``: turns the command line into the
    one to run (e.g. a lab's ``exec_argv``, to serve inside its namespace).
    ``ready(url)``: whether it is up; by default GET /v1/agent/key answers, asked
    through ``wrap`` too. Output goes to ``log_path``. Stopped by its own handle
    afterwards (terminate, wait, kill), whatever happened.
    """
    port = port or free_port()
    url = f"http://{host}:{port}"
    argv = [str(AGENT), "serve", "--host", host, "--port", str(port), "--data", str(data)]
    ready = ready or _key_answers(wrap)
    with log_path.open("wb") as log:
        server = subprocess.Popen(wrap(argv) if wrap else argv, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not ready(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cafe-agent serve did not start on {url}:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield url
        finally:
            stop_process(server)
