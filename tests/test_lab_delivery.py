"""``cafe-probe run --send`` in the lab: the probe runs, signs and delivers over its second link.

The inspector device runs inside the lab's probe namespace, on that
namespace's own loopback: it plays the officer's device at the end of the
probe's second link, and nothing is joined to the machine's network.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from lab.build import running
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line
from probe.outbox import Outbox
from probe.report import verify_receipt
from tests.agentkit import served_agent, setup_agent
from tests.conftest import finding, new_lab_id, probe_cmd

pytestmark = pytest.mark.lab

PORT = 8765  # the namespace's own loopback: no other service can hold it


def test_run_send_delivers_the_report_with_a_verified_receipt(tmp_path):
    data = tmp_path / "agent"
    home = ProbeHome(tmp_path / "probe-home")
    ident = home.keygen("lab-probe")
    setup_agent(data, probe_pub=home.public_key_path, probe_id=ident.probe_id)
    with running("small", new_lab_id("d")) as lab, \
            served_agent(data, tmp_path / "agent.log", port=PORT, wrap=lab.exec_argv) as url:
        home.pin_agent(url, public_line(load_public_key(data / "agent.pub")))
        truth = lab.truth()
        out = tmp_path / "run"
        proc = probe_cmd(lab, "run", "--profile", truth["profile"], "--iface", truth["probe"]["interface"],
                         "--out", str(out), "--home", str(home.root), "--task", "T-1", "--inspector", "350100001",
                         "--inspector", "350100002", "--send")
        assert proc.returncode == 0, proc.stderr
        assert "已送达 sent" in proc.stderr
    box = Outbox(home.outbox_path)
    assert box.pending() == [] and len(box.sent()) == 1
    receipt = verify_receipt(box.sent()[0].receipt.read_bytes(), load_public_key(data / "agent.pub"))
    assert receipt.probe_key_id == ident.key_id
    with sqlite3.connect(data / "agent.db") as db:
        stored = db.execute("SELECT report_id, envelope FROM reports").fetchall()
    assert [r[0] for r in stored] == [receipt.report_id]
    assert stored[0][1] == (out / "report.dsse.json").read_bytes()  # the device keeps the exact bytes
    assert finding(json.loads((out / "findings.json").read_text()), "IP-MAP")["status"] == "pass"
