"""The forwarding test against real Linux routers in namespaces of its own.

The topology (every name carries a fresh lab id; all torn down after the module, also on failure)::

    probe 198.18.70.250 ─┐
    A 198.18.70.1  ──────┤          A: forwards, NAT to the Internet namespace
    B 198.18.70.2  ──────┤ switch   B: forwards, NAT to a second ISP, sends no ICMP at all
    C 198.18.70.3  ──────┤ (br0)    C: ip_forward=0
    plain .4 .5 .6 ──────┘

    A wan0 203.0.113.2/26 ── 203.0.113.1 inet 203.0.113.65/27 ── target 203.0.113.80
    B wan0 198.51.100.2/25 ── 198.51.100.1 isp2 198.51.100.129/30 ── 198.51.100.130 inet

The target sits one hop behind the Internet namespace, so a packet that
reaches it with TTL 1 is still answered: the Internet side's gateway is the
first hop past A, as on a real line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.utils import rdpcap

from lab import netns as ns
from probe.net.arp import sweep
from probe.net.forwarding import build_syn, parse_time_exceeded, probe_forwarding
from probe.net.link import RawLink
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

LAN = IPv4Network("198.18.70.0/24")
PROBE_IP = IPv4Address("198.18.70.250")
TARGET = IPv4Address("203.0.113.80")
A, B, C = IPv4Address("198.18.70.1"), IPv4Address("198.18.70.2"), IPv4Address("198.18.70.3")
PLAIN = [IPv4Address(f"198.18.70.{n}") for n in (4, 5, 6)]
A_GATEWAY, B_GATEWAY, TRANSIT = IPv4Address("203.0.113.1"), IPv4Address("198.51.100.1"), IPv4Address("198.51.100.130")
NAT = ('table ip nat {\n chain postrouting {\n  type nat hook postrouting priority 100;\n'
       '  oifname "wan0" masquerade\n }\n}\n')
# B forwards, but nothing it sends itself may be ICMP: no time-exceeded, no unreachable.
SILENT = 'table ip silent {\n chain output {\n  type filter hook output priority 0;\n  ip protocol icmp drop\n }\n}\n'


@dataclass
class Topology:
    lab_id: str
    namespaces: list[str] = field(default_factory=list)
    macs: dict[IPv4Address, str] = field(default_factory=dict)
    hosts: list[tuple[IPv4Address, str]] = field(default_factory=list)

    def name(self, role: str) -> str:
        return f"{self.lab_id}-{role}"

    def set_loss(self, percent: int) -> None:
        """Random loss on every port of the switch, as lab/build.py's switch does it."""
        rules = "flush ruleset\n"
        if percent:
            rules += ("table bridge loss {\n chain forward {\n  type filter hook forward priority 0;\n"
                      f"  numgen random mod 100 < {percent} drop\n }}\n}}\n")
        ns.run_in(self.name("sw"), ["nft", "-f", "-"], stdin=rules)

    @contextlib.contextmanager
    def link(self, pcap: Path | None = None) -> Iterator[RawLink]:
        """The probe's raw link, opened inside the probe namespace (the socket stays there)."""
        with ns.inside(self.name("probe")):
            link = RawLink("eth0", pcap)
        try:
            yield link
        finally:
            link.close()


def _lan_mac(n: int) -> str:
    return f"02:70:00:00:00:{n:02x}"


def _build(topo: Topology) -> None:
    lan_nodes = {"probe": 250, "ra": 1, "rb": 2, "hc": 3, "h4": 4, "h5": 5, "h6": 6}
    wan = ["inet", "isp2", "tgt"]
    names = [topo.name(r) for r in ["sw", *lan_nodes, *wan]]
    topo.namespaces.extend(names)  # recorded before they exist, so teardown finds a half-built lab
    ns.add_ipv4_namespaces(names)
    for n in names:
        with ns.inside(n):
            ns.sysctl("net.ipv4.ip_forward", 1 if n.rsplit("-", 1)[1] in ("ra", "rb", "inet", "isp2") else 0)
    switch = ["link add br0 type bridge", "link set br0 up"]
    for role, n in lan_nodes.items():
        switch += [f"link add p-{role} type veth peer name eth0 address {_lan_mac(n)} netns {topo.name(role)}",
                   f"link set p-{role} master br0 up"]
        topo.macs[IPv4Address(f"198.18.70.{n}")] = _lan_mac(n)
    ns.ip_batch(switch, netns=topo.name("sw"))
    for role, n in lan_nodes.items():
        lines = ["link set lo up", "link set eth0 up", f"addr add 198.18.70.{n}/24 dev eth0"]
        if role.startswith("h"):
            lines.append(f"route add default via {A}")  # a PC's default route; without forwarding it routes nothing
        ns.ip_batch(lines, netns=topo.name(role))
    ns.ip_batch([f"link add wan0 type veth peer name a0 netns {topo.name('inet')}", "link set wan0 up",
                 "addr add 203.0.113.2/26 dev wan0", f"route add default via {A_GATEWAY}"], netns=topo.name("ra"))
    ns.ip_batch([f"link add wan0 type veth peer name b0 netns {topo.name('isp2')}", "link set wan0 up",
                 "addr add 198.51.100.2/25 dev wan0", f"route add default via {B_GATEWAY}"], netns=topo.name("rb"))
    ns.ip_batch(["link set lo up", "link set b0 up", "addr add 198.51.100.1/25 dev b0",
                 f"link add up0 type veth peer name x0 netns {topo.name('inet')}", "link set up0 up",
                 "addr add 198.51.100.129/30 dev up0", f"route add default via {TRANSIT}"], netns=topo.name("isp2"))
    ns.ip_batch(["link set lo up", "link set a0 up", "addr add 203.0.113.1/26 dev a0",
                 "link set x0 up", "addr add 198.51.100.130/30 dev x0",
                 "route add 198.51.100.0/25 via 198.51.100.129",
                 f"link add t0 type veth peer name eth0 netns {topo.name('tgt')}", "link set t0 up",
                 "addr add 203.0.113.65/27 dev t0"], netns=topo.name("inet"))
    ns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {TARGET}/27 dev eth0",
                 "route add default via 203.0.113.65"], netns=topo.name("tgt"))
    ns.run_in(topo.name("ra"), ["nft", "-f", "-"], stdin=NAT)
    ns.run_in(topo.name("rb"), ["nft", "-f", "-"], stdin=NAT + SILENT)


def _teardown(topo: Topology) -> None:
    names = [n for n in topo.namespaces if ns.netns_exists(n)]
    ns.ip_batch((f"netns del {n}" for n in names), force=True)
    left = [n for n in names if ns.netns_exists(n)]
    assert not left, f"namespaces left behind: {left}"


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    topo = Topology(new_lab_id("fw"))
    try:
        _build(topo)
        with topo.link() as link:
            found = sweep(link, [LAN], PROBE_IP)  # as in a run: the sweep names the hosts to test
        topo.hosts = [(h.address, h.mac) for h in found.hosts]
        assert dict(topo.hosts) == {a: m for a, m in topo.macs.items() if a != PROBE_IP}
        yield topo
    finally:
        _teardown(topo)


def _by_address(result) -> dict[IPv4Address, object]:
    return {f.address: f for f in result.forwarders}


def test_router_by_time_exceeded_silent_router_by_the_target_answer(topo, tmp_path):
    pcap = tmp_path / "capture.pcap"
    with topo.link(pcap) as link:
        result = probe_forwarding(link, topo.hosts, PROBE_IP, TARGET)
    found = _by_address(result)
    assert set(found) == {A, B}, result  # not C (no forwarding), not the plain hosts
    assert (found[A].how, found[A].answered_from, found[A].mac) == ("ttl_exceeded", A, topo.macs[A])
    assert (found[B].how, found[B].answered_from, found[B].mac) == ("tcp_answer", TARGET, topo.macs[B])
    assert result.hosts == 6 and result.syn_enabled and result.follow_sent == 0
    # A answered TTL 1, so no full-TTL SYN went out through it; B, C and the plain hosts got the SYN.
    sent = [p for p in rdpcap(str(pcap)) if p.src == topo.macs[PROBE_IP] and IP in p]
    full = {p.dst for p in sent if p[IP].ttl == 64}
    assert topo.macs[A] not in full and {topo.macs[a] for a in (B, C, *PLAIN)} == full
    assert sum(1 for p in sent if p[IP].ttl == 1) == result.ttl1_sent
    assert sum(1 for p in sent if p[IP].ttl == 64) == result.syn_sent


def test_following_finds_each_egress(topo):
    with topo.link() as link:
        result = probe_forwarding(link, topo.hosts, PROBE_IP, TARGET, follow_hops=2)
    found = _by_address(result)
    assert set(found) == {A, B}
    assert found[A].egress == A_GATEWAY and found[B].egress == B_GATEWAY
    # Past A the target answered at TTL 3: following stopped there. Past B, two ISP hops.
    assert [(h.ttl, h.address) for h in found[A].path] == [(2, A_GATEWAY)]
    assert [(h.ttl, h.address) for h in found[B].path] == [(2, B_GATEWAY), (3, TRANSIT)]
    assert result.follow_sent >= 4


def test_without_syn_nothing_leaves_the_lan_and_the_silent_router_stays_unseen(topo, tmp_path):
    pcap = tmp_path / "capture.pcap"
    with topo.link(pcap) as link:
        result = probe_forwarding(link, topo.hosts, PROBE_IP, TARGET, syn=False)
    assert set(_by_address(result)) == {A}
    assert result.syn_sent == 0 and not result.syn_enabled
    outgoing = [p for p in rdpcap(str(pcap)) if p.src == topo.macs[PROBE_IP] and IP in p]
    assert outgoing and all(p[IP].ttl == 1 for p in outgoing if p[IP].dst == str(TARGET))


def test_both_routers_found_through_a_lossy_switch(topo):
    topo.set_loss(20)
    try:
        with topo.link() as link:
            # 20 % per switch port each way: a question and its answer both pass 64 % of the time;
            # five retries leave B, found only by its one SYN step, unseen 0.36**6 = 0.2 % of runs.
            result = probe_forwarding(link, topo.hosts, PROBE_IP, TARGET, retries=5)
    finally:
        topo.set_loss(0)
    assert set(_by_address(result)) == {A, B}


def test_router_found_after_its_icmp_budget_was_spent(topo):
    """Spend A's ICMP tokens for the probe's address, then test at once with a single retry."""
    with topo.link() as link:
        heard: list[int] = []
        unsubscribe = link.subscribe(lambda f: heard.append(1) if parse_time_exceeded(f.data) else None)
        mac = bytes.fromhex(topo.macs[A].replace(":", ""))
        for i in range(12):
            link.send(build_syn(link.mac, mac, PROBE_IP, TARGET, ttl=1, ip_id=i, sport=33000 + i, dport=80, seq=i))
        # The router answers at once; the deadline only catches a hang. What its limit refused it never
        # sends later, so a little more listening cannot add to the count.
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        unsubscribe()
        assert 0 < len(heard) < 12  # Linux's limit is there: a burst of ~6, then one a second
        result = probe_forwarding(link, topo.hosts, PROBE_IP, TARGET, syn=False, retries=1)
    found = _by_address(result)
    assert set(found) == {A} and found[A].how == "ttl_exceeded"

