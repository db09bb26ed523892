"""Services on the LAN, judged by full probe runs against the lab's servers, clients and cameras.

What the probe must find is read from the lab's ground truth, never written into the test.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from lab.build import running
from tests.conftest import VENV_BIN, finding, new_lab_id, run_probe

pytestmark = pytest.mark.lab

SERVICE_CHECKS = ("SERVER-COUNT", "DUAL-BILLING", "AUDIT-SYSTEM", "REALNAME-CLIENT", "VIDEO-SYSTEM")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    out = tmp_path_factory.mktemp("services")
    with running("services", new_lab_id("sv")) as lab:
        run = run_probe(lab, out)
        run["stats"] = lab.service_stats(timeout=30)  # the timeout only catches a hung daemon
        yield run


def test_the_second_billing_server_is_found_and_the_registered_one_is_not_flagged(services):
    truth = services["truth"]
    f = finding(services["findings"], "DUAL-BILLING")
    assert f["status"] == "fail"
    seen = {(b["address"], b["product"]): b for b in f["evidence"]["billing_servers"]}
    assert set(seen) == {(b["address"], b["product"]) for b in truth["billing"] if b["running"]}
    registered = {(b["address"], b["product"]) for b in truth["billing"][:1]}
    for key, row in seen.items():
        assert row["registered"] is (key in registered)
        assert row["mac"] == next(b["mac"] for b in truth["billing"] if b["address"] == key[0])


def test_the_stopped_audit_server_is_down(services):
    truth = services["truth"]
    f = finding(services["findings"], "AUDIT-SYSTEM")
    assert f["status"] == "fail"
    rows = {r["address"]: r for r in f["evidence"]["servers"]}
    for audit in truth["audit"]:
        assert rows[audit["address"]]["up"] is audit["running"]


def test_missing_real_name_clients_are_the_exact_addresses(services):
    truth = services["truth"]
    f = finding(services["findings"], "REALNAME-CLIENT")
    assert f["status"] == "fail"
    assert sorted(f["evidence"]["missing"]) == sorted(truth["realname_missing"])
    live = [t for t in truth["terminals"] if t["power"] == "on"]
    assert f["evidence"]["live_terminals"] == len(live)
    assert f["evidence"]["ratio"] == pytest.approx(len(truth["realname_missing"]) / len(live), abs=1e-4)


def test_cameras_and_the_nvr_are_found_each_way_they_answer(services):
    truth = services["truth"]
    f = finding(services["findings"], "VIDEO-SYSTEM")
    assert f["status"] == "fail"  # fewer than the profile registers
    found = {c["address"]: c for c in services["observations"]["cameras"]["cameras"]}
    assert set(found) == {c["address"] for c in truth["cameras"]}
    for cam in truth["cameras"]:
        how = set(found[cam["address"]]["how"])
        assert found[cam["address"]]["mac"] == cam["mac"]
        assert ("rtsp" in how) is cam["rtsp"]
        assert ("ws-discovery" in how) is cam["onvif"]
        if cam["vendor"] == "hikvision":
            assert "sadp" in how
        if cam["vendor"] == "dahua":
            assert "dhip" in how
    terminals = {t["address"] for t in truth["terminals"]}
    assert not terminals & set(found)


def test_server_count_counts_every_server_and_no_terminal(services):
    truth = services["truth"]
    f = finding(services["findings"], "SERVER-COUNT")
    assert f["status"] == "fail"
    servers = {s["address"] for s in f["evidence"]["servers"]}
    expected = {h["address"] for h in truth["live_hosts"] if h["role"] in ("billing", "audit", "nvr")}
    running_servers = expected - {a["address"] for a in truth["audit"] if not a["running"]}
    assert servers == running_servers


def test_the_scan_kept_to_its_cap_at_the_lab_listeners(services):
    scan = services["observations"]["services"]
    assert 1 <= scan["peak_concurrent"] <= scan["max_concurrent"]
    assert 1 <= services["stats"]["max_open"] <= scan["max_concurrent"]
    # every terminal's closed ports were dropped by its firewall: filtered, not closed
    firewalled = {t["address"] for t in services["truth"]["terminals"] if t["firewall"] and t["power"] == "on"}
    for host in scan["hosts"]:
        if host["address"] in firewalled:
            assert host["closed"] == [], host


def test_reevaluation_agrees(services):
    out, truth = services["out"], services["truth"]
    proc = subprocess.run([str(VENV_BIN / "cafe-probe"), "evaluate", str(out / "observations.json"), "--profile",
                           truth["profile"], "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["findings"] == services["findings"]["findings"]
    statuses = {f["check_id"]: f["status"] for f in services["findings"]["findings"]}
    assert all(statuses[c] == "fail" for c in SERVICE_CHECKS)
    assert statuses["TERMINAL-COUNT"] == "pass" and statuses["IP-MAP"] == "pass"
