"""The demo: a probe run in the lab café, its report delivered to an inspector device on loopback.

The officer's path, end to end, on one machine:

1. the probe (its own key pair, in ``OUT/probe-home``) runs inside the lab's
   probe namespace, signs its report and queues it in its outbox;
2. the lab is torn down;
3. the inspector device (``cafe-agent serve`` on 127.0.0.1, data in
   ``OUT/agent``, two demo officer accounts) has the probe enrolled and its
   receipt key pinned in the probe home;
4. the outbox is sent from the host side over loopback, the signed receipt
   is verified and stored, and the report's URL is printed.

The café namespaces are never joined to the machine's network: delivery
happens after the run, from the host, to a service that listens on loopback
only. The agent keeps running after the demo so the officer can open the
page; ``cafe-lab demo-stop`` stops it by its recorded PID.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from agent_api.app import open_agent
from agent_api.auth import create_officer, enroll_probe
from agent_api.db import Officer, Probe
from agent_api.settings import Settings
from lab.netns import ProcRecord, is_running, record_of, stop
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line, write_secret_file

__all__ = ["DemoPaths", "DemoError", "ensure_probe", "ensure_agent", "start_agent", "stop_agent", "OFFICERS"]

# Demo accounts; their passwords are random, in 0600 files, never printed.
OFFICERS = [("officer1", "演示警员甲", "350100001"), ("officer2", "演示警员乙", "350100002")]


class DemoError(Exception):
    """The demo cannot go on; the message is one line."""


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its state, under one output directory."""

    root: Path

    @property
    def probe_home(self) -> Path:
        return self.root / "probe-home"

    @property
    def agent_data(self) -> Path:
        return self.root / "agent"

    def new_run_dir(self) -> Path:
        """A fresh directory for one run: a signed run's evidence is never overwritten."""
        return self.root / datetime.now(ZoneInfo("Asia/Shanghai")).strftime("run-%Y%m%d-%H%M%S")

    @property
    def pid_file(self) -> Path:
        return self.root / "agent.pid.json"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    def password_file(self, username: str) -> Path:
        return self.agent_data / f"{username}.password"


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def ensure_probe(paths: DemoPaths) -> ProbeHome:
    """The demo probe's home, with a key pair made on first use."""
    home = ProbeHome(paths.probe_home)
    if not home.private_key_path.exists():
        home.keygen("demo-probe")
    return home


def ensure_agent(paths: DemoPaths, home: ProbeHome) -> None:
    """Initialise the demo agent: database, receipt key, two officers, the probe enrolled (idempotent)."""
    agent = open_agent(Settings(data_dir=paths.agent_data))
    try:
        with agent.sessions() as db:
            for username, name, badge in OFFICERS:
                if db.execute(select(Officer).where(Officer.username == username)).scalar_one_or_none() is None:
                    password = secrets.token_urlsafe(12)
                    pw_file = paths.password_file(username)
                    pw_file.unlink(missing_ok=True)
                    write_secret_file(pw_file, (password + "\n").encode())
                    create_officer(db, username, name, badge, password)
            ident = home.identity()
            if db.execute(select(Probe).where(Probe.key_id == ident.key_id)).scalar_one_or_none() is None:
                enroll_probe(db, ident.probe_id, public_line(ident.public_key), "演示探针 / demo probe")
    finally:
        agent.engine.dispose()


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _agent_answers(url: str, agent_pub_line: str) -> bool:
    try:
        response = httpx.get(url + "/v1/agent/key", timeout=1, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and agent_pub_line in response.text


def start_agent(paths: DemoPaths, port: int) -> str:
    """Serve the demo agent on 127.0.0.1:PORT in the background (reusing one already started); its URL."""
    agent_pub = public_line(load_public_key(paths.agent_data / "agent.pub"))
    url = _url(port)
    if _agent_answers(url, agent_pub):  # this demo's device, started by an earlier demo
        return url
    if (stale := _recorded(paths)) is not None:  # ours, but not answering on this port
        stop(stale)
    with paths.agent_log.open("ab") as log:
        proc = subprocess.Popen([_tool("cafe-agent"), "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--data", str(paths.agent_data)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    record = record_of(proc, "cafe-agent serve (demo)")
    paths.pid_file.write_text(json.dumps(record.to_json()))
    deadline = time.monotonic() + 30
    while not _agent_answers(url, agent_pub):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(record)
            tail = paths.agent_log.read_text(errors="replace").strip().splitlines()[-3:]
            raise DemoError(f"检查设备服务未能启动 / the inspector device did not start on {url} "
                            f"(port in use? try --port): {' | '.join(tail)}")
        time.sleep(0.2)
    return url


def _recorded(paths: DemoPaths) -> ProcRecord | None:
    try:
        record = ProcRecord(**json.loads(paths.pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if is_running(record) else None


def stop_agent(paths: DemoPaths) -> bool:
    """Stop the demo agent by its recorded PID (only if it is still that process)."""
    record = _recorded(paths)
    paths.pid_file.unlink(missing_ok=True)
    if record is None:
        return False
    stop(record)
    return True
