"""The active DHCP discovery against the lab router's real dnsmasq: every offer recorded, no lease taken."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from lab.build import running
from tests.conftest import new_lab_id, run_probe

pytestmark = pytest.mark.lab


def test_small_sees_exactly_the_router_dnsmasq_and_takes_no_lease(tmp_path):
    with running("small", new_lab_id("d")) as lab:
        run = run_probe(lab, tmp_path)
        leases = (lab.state_dir / "dnsmasq.leases").read_text()
        dnsmasq_log = (lab.state_dir / "dnsmasq.log").read_text()
    truth = run["truth"]
    router = truth["lan"]["router"]
    dhcp = run["observations"]["dhcp"]
    assert dhcp["chaddr"] == truth["probe"]["mac"] and dhcp["sent"] == 5
    assert len(dhcp["offers"]) == 1, dhcp
    offer = dhcp["offers"][0]
    assert offer["server_id"] == router["address"] and offer["source_ip"] == router["address"]
    assert offer["source_mac"] == router["mac"]
    assert offer["routers"] == [router["address"]] and offer["dns"] == [router["address"]]
    assert offer["subnet_mask"] == "255.255.255.0"
    lo, hi = (IPv4Address(a) for a in truth["lan"]["dhcp_range"])
    assert lo <= IPv4Address(offer["offered_address"]) <= hi
    # A DISCOVER only: the server saw no REQUEST and wrote no lease.
    assert leases.strip() == ""
    assert "DHCPDISCOVER" in dnsmasq_log and "DHCPREQUEST" not in dnsmasq_log


def test_no_dhcp_skips_the_discover(tmp_path):
    with running("small", new_lab_id("d")) as lab:
        run = run_probe(lab, tmp_path, "--no-dhcp", "--no-names")
    assert run["observations"]["dhcp"] is None
    assert b"\x00\x44\x00\x43" not in (tmp_path / "capture.pcap").read_bytes()  # no UDP 68 -> 67 sent
