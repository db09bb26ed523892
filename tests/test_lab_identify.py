"""Venue identification and address claiming on a real lab café whose probe port holds no address.

The collector runs in the probe's namespace (its raw socket is opened there);
the café is the lab's ``small`` scenario, LAB-SMALL-0030 on 198.18.5.0/24.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import RawPcapReader

from lab import netns as ns
from lab.build import Lab, running
from probe.iface import inspect_interface
from probe.net.address import AddressConflict, NoFreeAddress, claim_address
from probe.net.identify import gather_signals
from probe.net.link import RawLink
from probe.observations import VenueSignals
from probe.profile import Network, load_profile
from probe.venue_match import Identification, match_venues
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

SMALL_ID = "LAB-SMALL-0030"
MESSY_ID = "LAB-MESSY-0250"
TWIN_MAC = "02:54:57:49:4e:01"
MESSY = Network.model_validate({"subnets": ["198.18.10.0/24"], "gateways": ["198.18.10.254"],
                                "dhcp_servers": ["198.18.10.254"]})
OTHER = Network.model_validate({"subnets": ["198.18.30.0/24"], "gateways": ["198.18.30.1"],
                                "dhcp_servers": ["198.18.30.1"]})


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running("small", new_lab_id("id"), probe_plugged=True, probe_addressed=False) as built:
        yield built


@contextlib.contextmanager
def probe_link(lab: Lab, pcap: Path | None = None) -> Iterator[RawLink]:
    """The probe's raw link, opened inside the probe namespace (the socket stays there)."""
    with ns.inside(lab.probe_netns):
        link = RawLink("eth0", pcap)
    try:
        yield link
    finally:
        link.close()


def venues(lab: Lab) -> dict[str, Network]:
    """The café's own network (gateway MAC as the technician noted it), its twin and the other cafés."""
    truth = lab.truth()
    router = truth["lan"]["router"]
    own = load_profile(truth["profile"]).network
    real = own.model_copy(update={"gateway_macs": {IPv4Address(router["address"]): router["mac"]}})
    twin = own.model_copy(update={"gateway_macs": {IPv4Address(router["address"]): TWIN_MAC}})
    return {SMALL_ID: real, "LAB-TWIN-0031": twin, MESSY_ID: MESSY, "LAB-OTHER-0040": OTHER}


def identify(lab: Lab, candidates: dict[str, Network], pcap: Path | None = None) -> tuple[VenueSignals, Identification]:
    gateways = [g for network in candidates.values() for g in network.gateways]
    with probe_link(lab, pcap) as link:
        signals = gather_signals(link, gateways)
    return signals, match_venues(signals, list(candidates.items()))


def test_the_right_cafe_among_three_and_only_arp_and_dhcp_on_the_wire(lab, tmp_path):
    truth = lab.truth()
    router = truth["lan"]["router"]
    staged = venues(lab)
    candidates = {k: staged[k] for k in (SMALL_ID, "LAB-TWIN-0031", MESSY_ID)}
    signals, result = identify(lab, candidates, tmp_path / "capture.pcap")
    assert (result.outcome, result.chosen) == ("match", SMALL_ID), result.reason
    assert [(str(a.address), a.mac) for a in signals.gateway_answers] == [(router["address"], router["mac"])]
    assert signals.asked == [IPv4Address(router["address"]), IPv4Address("198.18.10.254")]
    assert {(str(o.server_id), o.source_mac) for o in signals.offers} == {(router["address"], router["mac"])}
    assert signals.seconds < 60  # only catches a hang: the 5 s listening window is what it takes
    print(f"identified in {signals.seconds:.2f} s with {signals.frames_sent} frames: {result.reason}")

    lan = IPv4Network(truth["lan"]["subnet"])
    probe_mac = truth["probe"]["mac"]
    sent = 0
    for data, _ in RawPcapReader(str(tmp_path / "capture.pcap")):
        frame = Ether(data)
        if frame.src == probe_mac:
            sent += 1
            if ARP in frame:  # RFC 5227 probes for the asked gateways, nothing else
                assert frame[ARP].op == 1 and frame[ARP].psrc == "0.0.0.0"
                assert IPv4Address(frame[ARP].pdst) in signals.asked
            else:  # the DHCP DISCOVER broadcast, from no address
                assert frame[IP].src == "0.0.0.0" and frame[IP].dst == "255.255.255.255"
                assert frame[UDP].dport == 67 and frame[BOOTP].op == 1
        else:
            assert ARP in frame or (UDP in frame and {frame[UDP].sport, frame[UDP].dport} <= {67, 68}) \
                or (IP in frame and frame[IP].proto == 2), frame.summary()  # IGMP of the cameras' multicast
        if IP in frame:
            dst = IPv4Address(frame[IP].dst)
            assert dst in lan or dst == IPv4Address("255.255.255.255") or dst in IPv4Network("224.0.0.0/24"), \
                frame.summary()
    assert sent == signals.frames_sent


def test_the_twin_alone_is_refused_by_its_gateway_mac(lab):
    twin = venues(lab)["LAB-TWIN-0031"]
    _, result = identify(lab, {"LAB-TWIN-0031": twin})
    router = lab.truth()["lan"]["router"]
    assert result.outcome == "none" and result.chosen is None
    assert router["mac"] in result.reason and TWIN_MAC in result.reason, result.reason


def test_two_cafes_with_one_plan_and_no_macs_are_ambiguous(lab):
    staged = venues(lab)
    candidates = {k: staged[k].model_copy(update={"gateway_macs": {}}) for k in (SMALL_ID, "LAB-TWIN-0031")}
    candidates[MESSY_ID] = MESSY
    _, result = identify(lab, candidates)
    assert result.outcome == "ambiguous" and sorted(result.fits) == [SMALL_ID, "LAB-TWIN-0031"], result.reason


def test_a_cafe_that_is_not_staged_is_none_with_what_was_heard(lab):
    same_lan = Network.model_validate({"subnets": ["198.18.5.0/24"], "gateways": ["198.18.5.254"]})
    router = lab.truth()["lan"]["router"]
    signals, result = identify(lab, {MESSY_ID: MESSY, "LAB-OTHER-0040": OTHER, "LAB-SAME-LAN": same_lan})
    assert result.outcome == "none" and result.chosen is None
    assert not signals.gateway_answers and signals.offers
    assert f"DHCP 服务器 {router['address']}→" in result.reason and "3 个场所均不符" in result.reason, result.reason
    assert "none of the 3 staged venues" in result.reason


def test_identified_through_a_lossy_switch():
    with running("small", new_lab_id("il"), loss=20, probe_addressed=False) as lossy:
        staged = venues(lossy)
        candidates = {k: staged[k] for k in (SMALL_ID, "LAB-TWIN-0031", MESSY_ID)}
        signals, result = identify(lossy, candidates)
    assert (result.outcome, result.chosen) == ("match", SMALL_ID), result.reason
    print(f"identified at 20 % loss in {signals.seconds:.2f} s with {signals.frames_sent} frames")


# ---------------------------------------------------------------------------
# Claiming the address the run speaks from


def addresses(lab: Lab) -> tuple[IPv4Interface, ...]:
    """The probe's café port addresses, as netlink reports them."""
    with ns.inside(lab.probe_netns):
        return inspect_interface("eth0").addresses


def reachable_from_router(lab: Lab, address: IPv4Address) -> bool:
    """Whether the café router reaches the probe there: a refused TCP connect means ARP and IP both worked."""
    with ns.inside(lab.nsname("rt")):
        try:
            socket.create_connection((str(address), 9), timeout=30).close()  # the timeout only catches a hang
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return True


def test_claims_the_profile_address_and_gives_it_back_also_on_error(lab):
    network = venues(lab)[SMALL_ID].model_copy(update={"probe_address": IPv4Interface("198.18.5.240/24")})
    with pytest.raises(RuntimeError, match="boom"):
        with probe_link(lab) as link, ns.inside(lab.probe_netns):
            t0 = time.monotonic()
            with claim_address("eth0", network, link) as claimed:
                seconds = time.monotonic() - t0
                assert claimed == IPv4Interface("198.18.5.240/24") and claimed.how == "profile" and claimed.added
                assert inspect_interface("eth0").addresses == (IPv4Interface("198.18.5.240/24"),)
                assert reachable_from_router(lab, claimed.ip)
                raise RuntimeError("boom")
    assert addresses(lab) == ()
    print(f"profile address claimed in {seconds:.2f} s")


def test_refuses_a_profile_address_a_terminal_holds(lab):
    terminal = lab.truth()["terminals"][0]
    network = venues(lab)[SMALL_ID].model_copy(
        update={"probe_address": IPv4Interface(f"{terminal['address']}/24")})
    with probe_link(lab) as link, ns.inside(lab.probe_netns):
        with pytest.raises(AddressConflict) as refused:
            with claim_address("eth0", network, link):
                pytest.fail("claimed an address in use")
    assert refused.value.mac == terminal["mac"] and str(refused.value.address) == terminal["address"]
    line = str(refused.value)
    assert "\n" not in line and terminal["address"] in line and " / " in line
    assert addresses(lab) == ()


def test_picks_a_free_address_below_the_live_terminals(lab):
    # Terminals 1–30 sit on .101–.130; the numbering above .102 is reserved, .101 and .102 answer.
    network = Network.model_validate({"subnets": ["198.18.5.96/27"]})
    reserved = [IPv4Address(f"198.18.5.{n}") for n in range(103, 127)]
    live = {t["address"]: t["mac"] for t in lab.truth()["terminals"]}
    with probe_link(lab) as link, ns.inside(lab.probe_netns):
        with pytest.raises(NoFreeAddress, match="198.18.5.96/27"):
            with claim_address("eth0", network, link, avoid=reserved, max_candidates=2):
                pytest.fail("claimed an address in use")
        assert addresses(lab) == ()
        with claim_address("eth0", network, link, avoid=reserved) as claimed:
            assert claimed == IPv4Interface("198.18.5.100/27") and claimed.how == "picked"
            assert {str(a): m for a, m in claimed.taken.items()} == {a: live[a] for a in ("198.18.5.101", "198.18.5.102")}
            assert addresses(lab) == (IPv4Interface("198.18.5.100/27"),)
    assert addresses(lab) == ()


def test_an_address_already_inside_the_venue_is_used_and_left_alone(lab):
    ns.ip_batch(["addr add 198.18.5.250/24 dev eth0"], netns=lab.probe_netns)
    try:
        with probe_link(lab) as link, ns.inside(lab.probe_netns):
            with claim_address("eth0", venues(lab)[SMALL_ID], link) as claimed:
                assert claimed == IPv4Interface("198.18.5.250/24") and claimed.how == "existing"
                assert not claimed.added and link.sent == 0
        assert addresses(lab) == (IPv4Interface("198.18.5.250/24"),)
    finally:
        ns.ip_batch(["addr del 198.18.5.250/24 dev eth0"], netns=lab.probe_netns)
