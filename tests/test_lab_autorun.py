"""``cafe-probe autorun`` in the lab: a headless probe with three venues staged waits for the café cable,
identifies the venue, inspects, and delivers over its officer link to a real agent; a café it does not
know gets nothing sent past its LAN; a cable pulled mid-run leaves an incomplete run, and nothing is lost.

The inspector device (``cafe-agent serve``) runs in the lab's device namespace on 198.19.254.1, at the far
end of the officer link (its own namespace pair); the autorun runs in the probe namespace.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import struct
import subprocess
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.build import running
from probe.keys import load_public_key
from probe.outbox import Outbox
from probe.report import verify_receipt, verify_report
from tests.agentkit import served_agent, stop_process
from tests.autorunkit import (DEVICE, PORT, Journal, add_pack, lab_hardware, led_state, messy_gateway_mac, patterns,
                              stage_venues, start_autorun, venue_profiles, with_gateway_mac)
from tests.conftest import new_lab_id
from tests.packkit import lab_profile
from tests.reportkit import queue_report

pytestmark = pytest.mark.lab


def _agent_reports(data: Path) -> list[tuple[str, bytes]]:
    with sqlite3.connect(data / "agent.db") as db:
        return db.execute("SELECT report_id, payload FROM reports ORDER BY id").fetchall()


def _tx_packets(lab, iface: str = "eth0") -> int:
    out = subprocess.run(lab.exec_argv(["cat", f"/sys/class/net/{iface}/statistics/tx_packets"]),
                         capture_output=True, text=True, timeout=30, check=True)
    return int(out.stdout)


def test_autorun_identifies_messy_runs_and_delivers_over_the_officer_link(tmp_path):
    data = tmp_path / "agent"
    with running("messy", new_lab_id("ar"), probe_plugged=False, probe_addressed=False, officer_link=True) as lab:
        truth = lab.truth()
        probe = stage_venues(tmp_path, venue_profiles(tmp_path / "venues", truth["lan"]["router"]["mac"]), data)
        hardware, leds = lab_hardware(tmp_path)
        lab.set_officer_link(True)  # the agent binds its address on the device's end of the link
        with served_agent(data, tmp_path / "agent.log", port=PORT, wrap=lab.device_exec_argv, host=DEVICE):
            lab.set_officer_link(False)
            proc = start_autorun(lab, hardware, probe.home, tmp_path / "autorun.out")
            journal = Journal(probe.home, proc)
            try:
                journal.wait("waiting", 30)
                assert _tx_packets(lab) == 0  # unplugged: not one frame
                assert not (probe.home.root / "runs").exists()
                lab.set_officer_link(True)  # the officer's tablet is linked while the probe is plugged in
                lab.set_probe_plugged(True)
                found = journal.wait("identified", 60)
                assert found["detail"]["venue_id"] == "LAB-MESSY-0250", journal.lines()
                clock = journal.wait("clock", 60)
                assert clock["detail"]["ok"] is True, clock  # measured against the device over the link
                lab.set_officer_link(False)  # … and walks away during the run
                queued = journal.wait("queued", 300)
                journal.wait("officer_link_wait", 30)
                rid = queued["detail"]["report_id"]
                box = Outbox(probe.home.outbox_path)
                assert [e.report_id for e in box.pending()] == [rid] and _agent_reports(data) == []
                lab.set_officer_link(True)  # back: the report goes by itself
                assert proc.wait(120) == 0, (tmp_path / "autorun.out").read_text()
            finally:
                stop_process(proc)
    lines = journal.lines()
    assert patterns(lines) == ["off", "waiting", "working", queued["led"], "delivered"], patterns(lines)
    assert queued["led"] in ("done_ok", "done_failures") and queued["detail"]["complete"] is True
    assert lines[-1]["event"] == "stop" and lines[-1]["detail"]["peak_rss_mb"] < 150  # a Raspberry Pi's budget
    run_dir = Path(queued["detail"]["run_dir"])
    ident = json.loads((run_dir / "identify.json").read_text())
    assert ident["outcome"] == "match" and ident["chosen"] == "LAB-MESSY-0250"
    # The report: on the device, byte for byte, with a verified receipt; the task, the team and the pack.
    box = Outbox(probe.home.outbox_path)
    assert box.pending() == [] and [e.report_id for e in box.sent()] == [rid]
    receipt = verify_receipt(box.sent()[0].receipt.read_bytes(), load_public_key(data / "agent.pub"))
    assert receipt.report_id == rid
    stored = _agent_reports(data)
    assert [r[0] for r in stored] == [rid]
    ident_key = probe.home.identity()
    payload = verify_report((run_dir / "report.dsse.json").read_bytes(),
                            {ident_key.key_id: ident_key.public_key}).payload
    assert payload.venue.id == "LAB-MESSY-0250" and payload.task.id == "TASK-2026-0009"
    assert payload.task.inspectors == ["350100123", "350100456"] and payload.task_pack == probe.pack_id
    assert payload.complete and payload.clock is not None and payload.clock.ok
    # Why the probe took itself to be in this venue is part of the signed evidence.
    assert "identify.pcap" in {e.name for e in payload.evidence}
    identification = json.loads((run_dir / "observations.json").read_text())["identification"]
    assert identification["outcome"] == "match" and identification["chosen"] == "LAB-MESSY-0250"
    assert len(identification["candidates"]) == 3 and identification["signals"]["gateway_answers"]
    # The fake LEDs end as "delivered" left them: status steady lit; alert lit only with failures.
    assert led_state(leds) == {"alert": queued["led"] == "done_failures", "status": True}
    # The venue's secrets lived only in the run's private directory, removed afterwards.
    assert not list(probe.home.root.glob(".venue-*"))


def _ip_destinations(pcap: Path, source_mac: str) -> list[IPv4Address]:
    """The IPv4 destination of every frame ``source_mac`` sent (Ethernet II, untagged), in capture order."""
    from scapy.utils import RawPcapReader

    mac = bytes.fromhex(source_mac.replace(":", ""))
    found = []
    for data, _meta in RawPcapReader(str(pcap)):
        if data[6:12] == mac and data[12:14] == b"\x08\x00" and len(data) >= 34:
            found.append(IPv4Address(data[30:34]))
    return found


def _arp_targets(pcap: Path, source_mac: str) -> set[IPv4Address]:
    """The addresses ``source_mac`` asked for by ARP."""
    from scapy.utils import RawPcapReader

    mac = bytes.fromhex(source_mac.replace(":", ""))
    return {IPv4Address(data[38:42]) for data, _meta in RawPcapReader(str(pcap))
            if data[6:12] == mac and data[12:14] == b"\x08\x06" and struct.unpack_from("!H", data, 20)[0] == 1}


def test_autorun_in_an_unknown_cafe_sends_nothing_past_its_lan(tmp_path):
    data = tmp_path / "agent"
    with running("small", new_lab_id("an"), probe_plugged=False, probe_addressed=False, officer_link=True) as lab:
        truth = lab.truth()
        probe = stage_venues(tmp_path, venue_profiles(tmp_path / "venues", messy_gateway_mac()), data)
        hardware, leds = lab_hardware(tmp_path)
        lab.set_officer_link(True)  # up the whole time: anything sent would arrive
        with served_agent(data, tmp_path / "agent.log", port=PORT, wrap=lab.device_exec_argv, host=DEVICE):
            proc = start_autorun(lab, hardware, probe.home, tmp_path / "autorun.out")
            journal = Journal(probe.home, proc)
            try:
                journal.wait("waiting", 30)
                lab.set_probe_plugged(True)
                assert proc.wait(60) == 4, (tmp_path / "autorun.out").read_text()
            finally:
                stop_process(proc)
            assert _agent_reports(data) == []
    lines = journal.lines()
    assert patterns(lines) == ["off", "waiting", "working", "error"], patterns(lines)
    refusal = journal.wait("no_match", 0)
    run_dir = Path(refusal["detail"]["run_dir"])
    ident = json.loads((run_dir / "identify.json").read_text())
    assert ident["outcome"] == "none" and ident["chosen"] is None
    assert ident["reason"] == refusal["detail"]["reason"] and " / " in ident["reason"]  # 中文 / English
    assert {o["server_id"] for o in ident["signals"]["offers"]} == {"198.18.5.1"}  # it did listen and ask
    # Nothing past the identification: no run, no report, nothing queued or sent.
    assert sorted(p.name for p in run_dir.iterdir()) == ["identify.json", "identify.pcap", "outcome.json"]
    box = Outbox(probe.home.outbox_path)
    assert box.pending() == [] and box.sent() == []
    assert not any(line["event"] in ("address", "clock", "run_start", "queued", "delivery") for line in lines)
    # The capture: ARP for the staged gateways and the DHCP broadcast; no IP packet to any other address.
    probe_mac = truth["probe"]["mac"]
    sent_to = _ip_destinations(run_dir / "identify.pcap", probe_mac)
    assert IPv4Address("255.255.255.255") in sent_to
    lan = IPv4Network(truth["lan"]["subnet"])
    assert [a for a in sent_to if a not in lan and a != IPv4Address("255.255.255.255")] == []
    assert _arp_targets(run_dir / "identify.pcap", probe_mac) == {IPv4Address("198.18.10.254"),
                                                                   IPv4Address("198.18.30.1")}
    assert led_state(leds) == {"alert": False, "status": False}  # error blinks; the service ended, so dark


def test_autorun_pulled_mid_run_keeps_an_incomplete_run_and_loses_nothing(tmp_path):
    data = tmp_path / "agent"
    with running("small", new_lab_id("au"), probe_plugged=False, probe_addressed=False, officer_link=True) as lab:
        truth = lab.truth()
        small, _ = lab_profile(tmp_path / "src", "small")
        profiles = [with_gateway_mac(small, truth["lan"]["router"]["mac"], tmp_path / "small"),
                    *venue_profiles(tmp_path / "venues", messy_gateway_mac())[1:]]
        probe = stage_venues(tmp_path, profiles, data)
        earlier = queue_report(probe.home)
        hardware, _ = lab_hardware(tmp_path)
        lab.set_officer_link(True)
        with served_agent(data, tmp_path / "agent.log", port=PORT, wrap=lab.device_exec_argv, host=DEVICE):
            lab.set_officer_link(False)  # the officer's device is not linked during the run
            proc = start_autorun(lab, hardware, probe.home, tmp_path / "autorun.out")
            journal = Journal(probe.home, proc)
            try:
                journal.wait("waiting", 30)
                lab.set_probe_plugged(True)
                journal.wait("stage", 120, where=lambda line: line["detail"]["stage"] == "netbios")
                lab.set_probe_plugged(False)  # pulled while the terminals' names are asked, after the sweep
                queued = journal.wait("queued", 120)
                box = Outbox(probe.home.outbox_path)
                assert {e.report_id for e in box.pending()} == {earlier, queued["detail"]["report_id"]}
                assert _agent_reports(data) == []
                lab.set_officer_link(True)
                assert proc.wait(120) == 0, (tmp_path / "autorun.out").read_text()
            finally:
                stop_process(proc)
            stored = dict(_agent_reports(data))
    lines = journal.lines()
    assert patterns(lines) == ["off", "waiting", "working", "error", "delivered"], patterns(lines)
    detail = queued["detail"]
    assert detail["complete"] is False and detail["result"].startswith("未完成（中断）/ incomplete (interrupted)")
    assert "netbios" in detail["incomplete_reason"] and "café link lost its carrier" in detail["incomplete_reason"]
    run_dir = Path(detail["run_dir"])
    obs = json.loads((run_dir / "observations.json").read_text())
    assert obs["run"]["complete"] is False and obs["run"]["interrupted"]["stage"] == "netbios"
    assert obs["run"]["interrupted"]["stages_done"] == ["arp"] and obs["arp"]["hosts"]  # the sweep is kept …
    assert obs["netbios"]["answers"] == [] and obs["dhcp"] is None and obs["services"] is None  # … nothing after
    assert (run_dir / "capture.pcap").stat().st_size > 24  # every frame of the run, the lost stage's too
    # Both reports delivered: the one queued before the run and the incomplete one, marked so in its payload.
    box = Outbox(probe.home.outbox_path)
    assert box.pending() == [] and {e.report_id for e in box.sent()} == {earlier, detail["report_id"]}
    assert set(stored) == {earlier, detail["report_id"]}
    payload = json.loads(stored[detail["report_id"]])
    assert payload["complete"] is False and payload["incomplete_reason"] == detail["incomplete_reason"]
    assert payload["task_pack"] == probe.pack_id


def test_autorun_runs_once_per_plug_and_sigterm_ends_a_run_as_incomplete(tmp_path):
    with running("small", new_lab_id("as"), probe_plugged=False, probe_addressed=False, officer_link=True) as lab:
        truth = lab.truth()
        # First only a venue elsewhere is staged: this plug-in ends without a match …
        probe = stage_venues(tmp_path, venue_profiles(tmp_path / "venues", messy_gateway_mac())[2:], None)
        hardware, leds = lab_hardware(tmp_path)
        proc = start_autorun(lab, hardware, probe.home, tmp_path / "autorun.out", once=False)
        journal = Journal(probe.home, proc)
        try:
            journal.wait("waiting", 30)
            lab.set_probe_plugged(True)
            journal.wait("no_match", 30)
            journal.wait("await_unplug", 60)
            # … the technician stages this café's pack; still plugged in, the probe does not try again.
            small, _ = lab_profile(tmp_path / "src", "small")
            add_pack(tmp_path / "pack2", probe, [with_gateway_mac(small, truth["lan"]["router"]["mac"],
                                                                  tmp_path / "small")])
            time.sleep(2)
            assert [line["event"] for line in journal.lines()].count("link_up") == 1
            lab.set_probe_plugged(False)
            journal.wait("unplugged", 60)
            lab.set_probe_plugged(True)  # plugged again: a new run
            journal.wait("identified", 30)
            journal.wait("stage", 30, where=lambda line: line["detail"]["stage"] == "arp")
            proc.send_signal(signal.SIGTERM)  # systemctl stop, in the middle of the run
            assert proc.wait(60) == 0, (tmp_path / "autorun.out").read_text()
        finally:
            stop_process(proc)
        addresses = subprocess.run(lab.exec_argv(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]),
                                   capture_output=True, text=True, timeout=30, check=True).stdout
    lines = journal.lines()
    assert [line["event"] for line in lines].count("link_up") == 2
    queued = journal.wait("queued", 0)["detail"]
    assert queued["venue_id"] == "LAB-SMALL-0030" and queued["complete"] is False
    assert "stop requested (SIGTERM)" in queued["incomplete_reason"]
    assert queued["stages_done"] == []  # the sweep in progress ran out; its result was discarded
    # Nothing lost: the interrupted run's report waits in the outbox for the next start.
    assert [e.report_id for e in Outbox(probe.home.outbox_path).pending()] == [queued["report_id"]]
    assert lines[-1]["event"] == "stop" and lines[-1]["led"] == "off"
    assert patterns(lines) == ["off", "waiting", "working", "error", "waiting", "working", "error", "off"]
    assert led_state(leds) == {"alert": False, "status": False}
    assert "198.18.5." not in addresses  # the claimed address was given back
    assert not list(probe.home.root.glob(".venue-*"))
