"""The spine against the lab: every live host found, exactly the mismatched terminals reported."""

from __future__ import annotations

import json
import struct
import subprocess

import pytest

from lab.build import running
from probe.profile import load_profile
from tests.conftest import VENV_BIN, finding, new_lab_id, probe_cmd, run_probe

pytestmark = pytest.mark.lab


def _expected_ip_map(truth: dict) -> tuple[set[int], set[str]]:
    """From the ground truth alone: numbers that must be reported, addresses that cannot be identified."""
    profile = load_profile(truth["profile"])
    mismatched, unidentified = set(), set()
    for t in truth["terminals"]:
        if t["power"] != "on":
            continue
        number = profile.machine_number(t["name"]) if t["netbios"] else None
        if number is None:
            unidentified.add(t["address"])
        elif t["address"] != str(profile.expected_address(number)):
            mismatched.add(number)
    return mismatched, unidentified


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    with running("messy", new_lab_id("m")) as lab:
        yield lab, run_probe(lab, tmp_path_factory.mktemp("messy"))


def test_messy_every_live_host_found(messy):
    _, run = messy
    live = {(h["address"], h["mac"]) for h in run["truth"]["live_hosts"]}
    found = {(h["address"], h["mac"]) for h in run["observations"]["arp"]["hosts"]}
    assert found == live


def test_messy_run_is_signed_queued_and_verifiable(messy, probe_home):
    """The run's report verifies with the probe's public key, covers every evidence file, and waits in the outbox."""
    from probe.keys import load_public_key
    from probe.outbox import Outbox
    from probe.report import verify_report_file

    _, run = messy
    report, evidence = verify_report_file(run["out"] / "report.dsse.json", load_public_key(probe_home / "probe.pub"))
    assert sorted(evidence.matched) == ["capture.pcap", "findings.json", "observations.json"] and not evidence.absent
    p = report.payload
    assert p.venue.id == load_profile(run["truth"]["profile"]).venue.id
    assert p.run_id == run["observations"]["run"]["run_id"]
    assert [f.model_dump(mode="json") for f in p.findings] == run["findings"]["findings"]
    assert p.started_at.utcoffset() is not None and p.ended_at >= p.started_at
    queued = {e.report_id: e.envelope.read_bytes() for e in Outbox(probe_home / "outbox").pending()}
    assert queued[p.report_id] == (run["out"] / "report.dsse.json").read_bytes()


def test_messy_reports_exactly_the_mismatched_terminals(messy):
    _, run = messy
    mismatched, unidentified = _expected_ip_map(run["truth"])
    assert mismatched, "the scenario must contain mismatches"
    ip_map = finding(run["findings"], "IP-MAP")
    assert ip_map["status"] == "fail"
    assert {m["number"] for m in ip_map["evidence"]["mismatches"]} == mismatched
    assert {u["address"] for u in ip_map["evidence"]["unidentified"]} == unidentified
    by_number = {t["number"]: t for t in run["truth"]["terminals"]}
    for m in ip_map["evidence"]["mismatches"]:
        assert m["address"] == by_number[m["number"]]["address"]
        assert m["expected_address"] == by_number[m["number"]]["expected_address"]
        assert m["mac"] == by_number[m["number"]]["mac"]
    assert ip_map["result_type"] == "pending_followup"


def test_messy_names_unidentified_hosts_and_draws_a_sample(messy):
    _, run = messy
    ev = finding(run["findings"], "IP-MAP")["evidence"]
    renamed = [u for u in ev["unidentified"] if u["name"]]
    assert [u["name"] for u in renamed] == ["KTV-ROOM-2"]
    assert len(ev["sample"]) >= 2
    assert isinstance(ev["sample_seed"], int)


def test_messy_terminal_count(messy):
    _, run = messy
    tc = finding(run["findings"], "TERMINAL-COUNT")
    on = [t for t in run["truth"]["terminals"] if t["power"] == "on"]
    assert tc["evidence"]["seen"] == len(on)
    assert tc["evidence"]["licensed"] == 250
    assert tc["status"] == "pass"


def test_messy_outputs_and_reevaluation(messy, tmp_path):
    lab, run = messy
    obs_path = tmp_path / "obs.json"
    obs_path.write_text(json.dumps(run["observations"]))
    proc = subprocess.run([str(VENV_BIN / "cafe-probe"), "evaluate", str(obs_path), "--profile", run["truth"]["profile"], "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["findings"] == run["findings"]["findings"]
    assert run["findings"]["ruleset"]["sha256"] and len(run["findings"]["ruleset"]["sha256"]) == 64
    assert run["observations"]["run"]["started_at"].endswith("+08:00")


def test_small_has_no_failure(tmp_path):
    with running("small", new_lab_id("s")) as lab:
        run = run_probe(lab, tmp_path)
    statuses = {f["check_id"]: f["status"] for f in run["findings"]["findings"]}
    assert "fail" not in statuses.values()
    assert statuses["IP-MAP"] == "pass"
    assert statuses["TERMINAL-COUNT"] == "pass"
    for check_id in ("DUAL-UPLINK", "ROGUE-DHCP", "FOREIGN-SUBNET", "SERVER-COUNT", "DUAL-BILLING", "AUDIT-SYSTEM",
                     "REALNAME-CLIENT", "VIDEO-SYSTEM"):
        assert statuses[check_id] == "pass", check_id
    (router,) = run["observations"]["snmp"]
    assert router["ok"] and router["address"] == run["truth"]["lan"]["router"]["address"]
    assert [f["address"] for f in run["observations"]["forwarding"]["forwarders"]] == [router["address"]]
    pcap = (tmp_path / "capture.pcap").read_bytes()
    assert struct.unpack("<I", pcap[:4])[0] == 0xA1B2C3D4
    # at least one request per address swept, and the replies
    assert pcap.count(b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01") >= 253
    assert pcap.count(b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02") >= 31


def test_messy_at_five_percent_loss_finds_everyone(messy, tmp_path):
    lab, _ = messy
    lab.set_loss(5)
    try:
        run = run_probe(lab, tmp_path)
    finally:
        lab.set_loss(0)
    live = {h["address"] for h in run["truth"]["live_hosts"]}
    found = {h["address"] for h in run["observations"]["arp"]["hosts"]}
    assert found == live
    # Every live terminal that shares a name is named (issue 15: one run in six left one unnamed), each once.
    named = {t["address"] for t in run["truth"]["terminals"] if t["power"] == "on" and t["netbios"]}
    answers = [a["address"] for a in run["observations"]["netbios"]["answers"]]
    assert len(named) >= 150 and named <= set(answers) and len(answers) == len(set(answers))
    mismatched, _ = _expected_ip_map(run["truth"])
    assert {m["number"] for m in finding(run["findings"], "IP-MAP")["evidence"]["mismatches"]} == mismatched


def test_refusals_inside_the_lab(messy, tmp_path):
    lab, run = messy
    profile = run["truth"]["profile"]
    no_iface = probe_cmd(lab, "run", "--profile", profile, "--out", str(tmp_path))
    assert no_iface.returncode == 2 and "--iface" in no_iface.stderr
    missing = probe_cmd(lab, "run", "--profile", profile, "--iface", "nope0", "--out", str(tmp_path))
    assert missing.returncode == 2 and "nope0" in missing.stderr
    big = tmp_path / "big.yaml"
    big.write_text(open(profile).read().replace("198.18.10.0/24", "198.18.0.0/16"))
    large = probe_cmd(lab, "run", "--profile", str(big), "--iface", "eth0", "--out", str(tmp_path))
    assert large.returncode == 2 and "/20" in large.stderr
    lo = probe_cmd(lab, "run", "--profile", profile, "--iface", "lo", "--out", str(tmp_path))
    assert lo.returncode == 2 and "outside" in lo.stderr
    subprocess.run(["ip", "-n", lab.probe_netns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                   check=True)
    down = probe_cmd(lab, "run", "--profile", profile, "--iface", "d0", "--out", str(tmp_path))
    assert down.returncode == 2 and "down" in down.stderr
    for dev in ("d0", "d1"):
        subprocess.run(["ip", "-n", lab.probe_netns, "link", "set", dev, "up"], check=True)
    bare = probe_cmd(lab, "run", "--profile", profile, "--iface", "d0", "--out", str(tmp_path))
    assert bare.returncode == 2 and "no IPv4 address" in bare.stderr
