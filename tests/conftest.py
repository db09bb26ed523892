"""Shared fixtures. Lab tests build cafés in namespaces they own and always remove them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Property tests check behaviour, never speed: no per-example deadline (Hypothesis' default is 200 ms) and
# no "too slow" health check, either of which a busy CI machine trips. A test's own @settings inherits these
# for what it does not set.
settings.register_profile("cafe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cafe")
VENV_BIN = Path(sys.executable).parent


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (run setup.sh)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _lab_unavailable()
    if reason:
        for item in items:
            if "lab" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def probe_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One probe home (key pair, outbox) for the session, found by every cafe-probe through CAFE_PROBE_HOME."""
    from probe.home import ProbeHome

    home = tmp_path_factory.mktemp("probe-home")
    ProbeHome(home).keygen("probe-test")
    previous = os.environ.get("CAFE_PROBE_HOME")
    os.environ["CAFE_PROBE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("CAFE_PROBE_HOME", None)
    else:
        os.environ["CAFE_PROBE_HOME"] = previous


def new_lab_id(prefix: str) -> str:
    """A lab id no other test or demo uses (namespaces are named after it)."""
    return prefix + secrets.token_hex(3)


def probe_cmd(lab, *args: str) -> subprocess.CompletedProcess:
    """Run ``cafe-probe ARGS`` inside the lab's probe namespace."""
    return subprocess.run(lab.exec_argv(["cafe-probe", *args]), capture_output=True, text=True, timeout=300)


def run_probe(lab, out: Path, *extra: str) -> dict:
    """A full probe run in the lab; returns findings, observations and the process result."""
    truth = lab.truth()
    proc = probe_cmd(lab, "run", "--profile", truth["profile"], "--iface", truth["probe"]["interface"],
                     "--out", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return {
        "proc": proc,
        "out": out,
        "truth": truth,
        "findings": json.loads((out / "findings.json").read_text()),
        "observations": json.loads((out / "observations.json").read_text()),
    }


def finding(doc: dict, check_id: str) -> dict:
    return next(f for f in doc["findings"] if f["check_id"] == check_id)


@pytest.fixture(scope="session")
def pg_server():
    """One private PostgreSQL server for the session (tests.pgkit), stopped by its own PID at the end."""
    import tempfile

    from tests.pgkit import PgServer

    server = PgServer.start(Path(tempfile.mkdtemp(prefix="cafe-pg-")))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """The agent's database, once on SQLite (a file in tmp_path) and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agent.db'}"
    return request.getfixturevalue("pg_server").fresh_url()
