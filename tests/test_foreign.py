"""Asking for common router addresses by ARP: the frames, the re-asking of the silent, and real kernels answering.

The lab test builds its own namespaces (a switch, the probe, three foreign
devices) and always removes them.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap

from lab import netns
from probe.net.arp import parse_arp
from probe.net.foreign import ask_router_addresses, build_request, foreign_targets
from probe.net.link import Frame, RawLink, mac_str
from probe.observations import ForeignArpAnswer
from tests.conftest import new_lab_id

PROBE_MAC = bytes.fromhex("02000000fe01")
PROBE_IP = IPv4Address("198.18.80.250")
CAFE = [IPv4Network("198.18.80.0/24")]
A = IPv4Address


def test_request_forms():
    for sender in ("0.0.0.0", "198.18.80.250"):
        frame = build_request(PROBE_MAC, A(sender), A("192.0.2.1"))
        pkt = Ether(frame)
        assert len(frame) == 60 and pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.src == mac_str(PROBE_MAC)
        arp = pkt[ARP]
        assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (
            1, mac_str(PROBE_MAC), sender, "00:00:00:00:00:00", "192.0.2.1")
        assert parse_arp(frame).target_ip == int(A("192.0.2.1"))


def test_targets_skip_the_cafe_and_repeats():
    asked = [A("192.168.1.1"), A("198.18.80.1"), A("192.0.2.1"), A("192.168.1.1"), A("198.18.80.254")]
    assert foreign_targets(asked, CAFE) == [A("192.168.1.1"), A("192.0.2.1")]
    assert foreign_targets(asked, [IPv4Network("0.0.0.0/0")]) == []


def _reply(mac: bytes, address: IPv4Address, request: bytes) -> bytes:
    """What a Linux stack answers to ``request``: to its sender, whose address may be 0.0.0.0."""
    req = parse_arp(request)
    return bytes(Ether(src=mac_str(mac), dst=mac_str(req.sender_mac))
                 / ARP(op=2, hwsrc=mac_str(mac), psrc=str(address), hwdst=mac_str(req.sender_mac),
                       pdst=str(IPv4Address(req.sender_ip)))).ljust(60, b"\0")


class _Switch:
    """A link whose frames reach fake devices that answer in the receiver's place, some not every time."""

    def __init__(self, devices: dict[IPv4Address, list[tuple[bytes, str, int]]]) -> None:
        # address -> [(mac, forms it answers: "probe"/"own"/"both", requests it ignores first)]
        self.mac = PROBE_MAC
        self.devices = devices
        self.sent: list[bytes] = []
        self.handlers: list = []

    def subscribe(self, handler):
        self.handlers.append(handler)
        return lambda: self.handlers.clear()

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        req = parse_arp(frame)
        form = "probe" if req.sender_ip == 0 else "own"
        for n, (mac, answers, ignore) in enumerate(self.devices.get(IPv4Address(req.target_ip), [])):
            if ignore:
                self.devices[IPv4Address(req.target_ip)][n] = (mac, answers, ignore - 1)
            elif answers in (form, "both"):
                for handler in list(self.handlers):
                    handler(Frame(_reply(mac, IPv4Address(req.target_ip), frame), 0.0, False))


def _asked(link: _Switch) -> list[tuple[str, str]]:
    return [(str(IPv4Address(parse_arp(f).target_ip)), str(IPv4Address(parse_arp(f).sender_ip))) for f in link.sent]


def test_both_forms_silent_asked_again_answers_deduplicated():
    m1, m2, m3 = (bytes.fromhex(f"0200000000{i:02x}") for i in (1, 2, 3))
    link = _Switch({A("192.0.2.1"): [(m1, "both", 0), (m2, "own", 0)],  # two devices claim it
                    A("192.0.2.254"): [(m3, "own", 2)]})                  # loses its first two requests
    result = ask_router_addresses(link, [A("192.0.2.1"), A("198.18.80.1"), A("192.0.2.254"), A("192.0.2.9")],
                                  PROBE_IP, CAFE, rate=5000, retries=2, window=0.01)
    assert result.asked == [A("192.0.2.1"), A("192.0.2.254"), A("192.0.2.9")]
    assert result.answers == [
        ForeignArpAnswer(address=A("192.0.2.1"), mac=mac_str(m1), asked_as="probe"),
        ForeignArpAnswer(address=A("192.0.2.1"), mac=mac_str(m2), asked_as="own_address"),
        ForeignArpAnswer(address=A("192.0.2.254"), mac=mac_str(m3), asked_as="own_address"),
    ]
    pair = lambda a: [(a, "0.0.0.0"), (a, "198.18.80.250")]  # noqa: E731
    # pass 1 asks all three, pass 2 the two still silent, pass 3 only the one that never answers
    assert _asked(link) == (pair("192.0.2.1") + pair("192.0.2.254") + pair("192.0.2.9")
                            + pair("192.0.2.254") + pair("192.0.2.9") + pair("192.0.2.9"))


class _Chatter(_Switch):
    """Every request is followed by another host's exchange with 192.0.2.1 and by our own request, echoed."""

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        question = build_request(bytes.fromhex("020000000077"), A("198.18.80.9"), A("192.0.2.1"))
        for handler in list(self.handlers):
            handler(Frame(_reply(bytes.fromhex("0200000000aa"), A("192.0.2.1"), question), 0.0, False))
            handler(Frame(frame, 0.0, True))


def test_replies_not_for_us_are_ignored():
    link = _Chatter({})
    result = ask_router_addresses(link, [A("192.0.2.1")], PROBE_IP, CAFE, rate=5000, retries=1, window=0.01)
    assert result.answers == [] and len(link.sent) == 4  # still silent, so asked again


def test_nothing_to_ask_sends_nothing():
    link = _Switch({})
    result = ask_router_addresses(link, [A("198.18.80.1")], PROBE_IP, CAFE)
    assert result.asked == [] and result.answers == [] and link.sent == []
    with pytest.raises(ValueError):
        ask_router_addresses(link, [], PROBE_IP, CAFE, rate=0)


# ------------------------------------------------------------------ lab


@pytest.fixture
def foreign_lab(tmp_path: Path):
    """A switch, the probe on 198.18.80.250/24 and three foreign devices; removed whatever happens."""
    lab = new_lab_id("fa")
    sw, probe = f"{lab}-sw", f"{lab}-pr"
    devices = {"f1": "192.0.2.1", "f10": "192.0.2.10", "f254": "192.0.2.254"}
    names = [sw, probe, *(f"{lab}-{d}" for d in devices)]
    try:
        netns.add_ipv4_namespaces(names)
        netns.ip_batch(["link add br0 type bridge", "link set br0 up",
                        f"link add p-pr type veth peer name eth0 netns {probe}", "link set p-pr master br0 up"]
                       + [line for d in devices for line in (
                           f"link add p-{d} type veth peer name eth0 netns {lab}-{d}",
                           f"link set p-{d} master br0 up")], netns=sw)
        netns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {PROBE_IP}/24 dev eth0"], netns=probe)
        for d, address in devices.items():
            netns.ip_batch(["link set lo up", "link set eth0 up", f"addr add {address}/24 dev eth0"],
                           netns=f"{lab}-{d}")
        # This one ignores RFC 5227 probes (some embedded stacks do): only the own-address form finds it.
        netns.run_in(f"{lab}-f254", ["nft", "-f", "-"], stdin=(
            "table arp lab_noprobe {\n chain input {\n  type filter hook input priority 0;\n"
            "  arp saddr ip 0.0.0.0 drop\n }\n}\n"))
        macs = {d: _mac(f"{lab}-{d}") for d in devices}
        yield {"probe": probe, "macs": macs, "pcap": tmp_path / "foreign.pcap"}
    finally:
        netns.ip_batch((f"netns del {n}" for n in names if netns.netns_exists(n)), force=True)
        assert not any(netns.netns_exists(n) for n in names)


def _mac(ns: str) -> str:
    return netns.run_in(ns, ["cat", "/sys/class/net/eth0/address"]).strip()


@pytest.mark.lab
def test_real_stacks_answer_for_their_own_address_only(foreign_lab):
    asked = [A("198.18.80.1"), A("192.0.2.1"), A("192.0.2.254"), A("192.0.2.77"), A("198.18.80.99")]
    with netns.inside(foreign_lab["probe"]):
        link = RawLink("eth0", foreign_lab["pcap"])
    try:
        result = ask_router_addresses(link, asked, PROBE_IP, CAFE, rate=200, retries=2, window=0.3)
    finally:
        link.close()
    macs = foreign_lab["macs"]
    assert result.asked == [A("192.0.2.1"), A("192.0.2.254"), A("192.0.2.77")]
    assert result.answers == [ForeignArpAnswer(address=A("192.0.2.1"), mac=macs["f1"], asked_as="probe"),
                              ForeignArpAnswer(address=A("192.0.2.254"), mac=macs["f254"], asked_as="own_address")]
    # what went out: both forms for each foreign address, 192.0.2.77 on every pass, nothing for the café
    requests = [arp for arp in map(parse_arp, (bytes(p) for p in rdpcap(str(foreign_lab["pcap"]))))
                if arp is not None and arp.op == 1 and arp.sender_mac == link.mac]
    asked_count = Counter((str(IPv4Address(r.target_ip)), str(IPv4Address(r.sender_ip))) for r in requests)
    assert asked_count == {(a, s): n for a, n in (("192.0.2.1", 1), ("192.0.2.254", 1), ("192.0.2.77", 3))
                           for s in ("0.0.0.0", str(PROBE_IP))}
    # 192.0.2.77 never answers, so each of the three passes waited its whole window: the lower bound is
    # behaviour. The upper one only catches a hang.
    assert 3 * 0.3 <= result.seconds < 15
