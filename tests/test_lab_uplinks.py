"""Second uplinks, rogue DHCP and self-made LANs against the lab's real routers, dnsmasq and snmpd.

Each scenario is built once per module and always torn down. What the probe
must find is read from the lab's ground truth, never written into the test.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from lab.build import running
from tests.conftest import VENV_BIN, finding, new_lab_id, run_probe

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    out = tmp_path_factory.mktemp("rogue")
    with running("rogue", new_lab_id("ro")) as lab:
        run = run_probe(lab, out)
        run["leases"] = {p.name: p.read_text() for p in lab.state_dir.glob("*.leases")}
        yield run


@pytest.fixture(scope="module")
def uplinks(tmp_path_factory):
    out = tmp_path_factory.mktemp("uplinks")
    with running("uplinks", new_lab_id("up")) as lab:
        yield run_probe(lab, out)


def _by_address(items: list[dict], key: str = "address") -> dict[str, dict]:
    return {item[key]: item for item in items}


def test_every_rogue_dhcp_server_is_found_and_the_registered_one_is_not_flagged(rogue):
    truth = rogue["truth"]
    f = finding(rogue["findings"], "ROGUE-DHCP")
    assert f["status"] == "fail"
    servers = _by_address(f["evidence"]["servers"], "server_id")
    router = truth["lan"]["router"]
    assert servers[router["address"]]["registered"] is True and servers[router["address"]]["mac"] == router["mac"]
    rogues = {d["address"]: d for d in truth["rogue_dhcp"]}
    assert set(servers) == {router["address"], *rogues}
    for address, d in rogues.items():
        assert servers[address]["registered"] is False
        assert servers[address]["mac"] == d["mac"]
        assert servers[address]["router"] == d["router"]
    # no lease taken anywhere: only DISCOVERs went out from the probe's MAC
    probe_mac = truth["probe"]["mac"]
    assert all(probe_mac not in text for text in rogue["leases"].values())


def test_foreign_devices_are_found_silent_or_chatty(rogue):
    truth = rogue["truth"]
    f = finding(rogue["findings"], "FOREIGN-SUBNET")
    assert f["status"] == "fail"
    hosts = _by_address(f["evidence"]["hosts"])
    assert set(hosts) == {d["address"] for d in truth["foreign"]}
    for d in truth["foreign"]:
        assert hosts[d["address"]]["mac"] == d["mac"]
    asked = {a["address"] for a in rogue["observations"]["foreign_arp"]["answers"]}
    silent = {d["address"] for d in truth["foreign"] if not d["chatty"]}
    assert silent <= asked  # a device that never speaks is found only by asking


def test_the_plugged_in_router_of_the_rogue_cafe_forwards(rogue):
    truth = rogue["truth"]
    f = finding(rogue["findings"], "DUAL-UPLINK")
    assert f["status"] == "fail"
    forwarders = _by_address(f["evidence"]["forwarders"])
    assert forwarders[truth["lan"]["router"]["address"]]["registered"] is True
    for r in truth["routers"]:
        assert forwarders[r["address"]]["registered"] is False and forwarders[r["address"]]["mac"] == r["mac"]
    terminals = {t["address"] for t in truth["terminals"]}
    assert not terminals & set(forwarders)


def test_terminals_without_netbios_are_named_from_dhcp(rogue):
    truth = rogue["truth"]
    announcing = {t["mac"]: t["name"] for t in truth["terminals"] if t["dhcp_name"] and t["power"] == "on"}
    seen = {d["mac"]: d["hostname"] for d in rogue["observations"]["dhcp_hostnames"]}
    assert announcing and all(seen.get(mac) == name for mac, name in announcing.items())
    silent = [t for t in truth["terminals"] if not t["netbios"] and t["dhcp_name"]]
    assert silent
    ip_map = finding(rogue["findings"], "IP-MAP")
    unidentified = {h["address"] for h in ip_map["evidence"]["unidentified"]}
    assert not {t["address"] for t in silent} & unidentified  # their numbers came from the DHCP names


def test_second_lines_are_found_by_ttl_by_tcp_and_over_snmp(uplinks):
    truth = uplinks["truth"]
    f = finding(uplinks["findings"], "DUAL-UPLINK")
    assert f["status"] == "fail"
    forwarders = _by_address(f["evidence"]["forwarders"])
    main = truth["lan"]["router"]
    assert forwarders[main["address"]]["registered"] is True
    assert forwarders[main["address"]]["egress"] == main["egress"]
    for r in truth["routers"]:
        got = forwarders[r["address"]]
        assert got["registered"] is False and got["mac"] == r["mac"]
        # a router that never sends ICMP is still found, by the answer that came back through it
        assert got["how"] == ("ttl_exceeded" if r["icmp"] else "tcp_answer")
        assert got["egress"] == r["egress"]
    assert len(forwarders) == 1 + len(truth["routers"])
    assert set(f["evidence"]["egress"]) == {main["egress"], *(r["egress"] for r in truth["routers"])}
    snmp = _by_address(f["evidence"]["snmp"])[main["address"]]
    assert snmp["error"] is None and snmp["uplinks"] == 1
    assert len(snmp["wan_up"]) == 2 and len(snmp["default_routes"]) == 2
    assert finding(uplinks["findings"], "ROGUE-DHCP")["status"] == "pass"
    assert finding(uplinks["findings"], "FOREIGN-SUBNET")["status"] == "pass"


def test_snmp_v3_read_of_the_router_is_complete(uplinks):
    (device,) = uplinks["observations"]["snmp"]
    assert device["ok"] and device["version"] == "3" and device["role"] == "router"
    names = {i["name"] for i in device["interfaces"]}
    assert {"lan0", "wan0", "wan1"} <= names
    defaults = [r for r in device["routes"] if r["destination"] == "0.0.0.0/0"]
    assert len(defaults) == 2


def test_the_capture_holds_the_forwarding_packets_and_reevaluation_agrees(uplinks):
    out, truth = uplinks["out"], uplinks["truth"]
    fwd = uplinks["observations"]["forwarding"]
    assert fwd["ttl1_sent"] >= fwd["hosts"] > 0 and fwd["syn_enabled"] and fwd["follow_hops"] == 2
    assert fwd["syn_sent"] >= 1 and fwd["follow_sent"] >= 2
    proc = subprocess.run([str(VENV_BIN / "cafe-probe"), "evaluate", str(out / "observations.json"), "--profile",
                           truth["profile"], "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["findings"] == uplinks["findings"]["findings"]
