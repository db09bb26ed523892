"""``cafe-probe run --send`` in the lab: the probe runs, signs and delivers over its second link.

The inspector device runs inside the lab's probe namespace, on that
namespace's own loopback: it plays the officer's device at the end of the
probe's second link, and nothing is joined to the machine's network.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

import pytest

from lab.build import running
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line
from probe.outbox import Outbox
from probe.report import verify_receipt
from tests.conftest import VENV_BIN, finding, new_lab_id, probe_cmd

pytestmark = pytest.mark.lab

PORT = 8765  # the namespace's own loopback: no other service can hold it


def _agent(*args: str) -> None:
    proc = subprocess.run([str(VENV_BIN / "cafe-agent"), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_run_send_delivers_the_report_with_a_verified_receipt(tmp_path):
    data = tmp_path / "agent"
    home = ProbeHome(tmp_path / "probe-home")
    ident = home.keygen("lab-probe")
    _agent("init", "--data", str(data))
    _agent("enroll-probe", str(home.public_key_path), "--probe-id", ident.probe_id, "--data", str(data))
    home.pin_agent(f"http://127.0.0.1:{PORT}", public_line(load_public_key(data / "agent.pub")))
    with running("small", new_lab_id("d")) as lab:
        log = (tmp_path / "agent.log").open("wb")
        server = subprocess.Popen(lab.exec_argv(["cafe-agent", "serve", "--host", "127.0.0.1", "--port", str(PORT),
                                                 "--data", str(data)]), stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            knock = lab.exec_argv(["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)"])
            while subprocess.run(knock, capture_output=True, timeout=30).returncode != 0:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
                time.sleep(0.2)
            truth = lab.truth()
            out = tmp_path / "run"
            proc = probe_cmd(lab, "run", "--profile", truth["profile"], "--iface", truth["probe"]["interface"],
                             "--out", str(out), "--home", str(home.root), "--task", "T-1", "--inspector", "350100001",
                             "--inspector", "350100002", "--send")
            assert proc.returncode == 0, proc.stderr
            assert "已送达 sent" in proc.stderr
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
    box = Outbox(home.outbox_path)
    assert box.pending() == [] and len(box.sent()) == 1
    receipt = verify_receipt(box.sent()[0].receipt.read_bytes(), load_public_key(data / "agent.pub"))
    assert receipt.probe_key_id == ident.key_id
    with sqlite3.connect(data / "agent.db") as db:
        stored = db.execute("SELECT report_id, envelope FROM reports").fetchall()
    assert [r[0] for r in stored] == [receipt.report_id]
    assert stored[0][1] == (out / "report.dsse.json").read_bytes()  # the device keeps the exact bytes
    assert finding(json.loads((out / "findings.json").read_text()), "IP-MAP")["status"] == "pass"
