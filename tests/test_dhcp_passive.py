"""The passive DHCP server listener: every server's OFFER, ACK or NAK to any client, parsed without ever raising.

The lab test runs a real dnsmasq in namespaces of its own and always removes them.
"""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hypothesis import given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lab import netns
from probe.net.dhcp import DhcpServerListener, build_discover, discover, parse_offer, parse_server_message
from probe.net.link import Frame, RawLink, mac_str
from probe.observations import DhcpServerMessage
from tests.conftest import new_lab_id

SERVER_MAC = "02:aa:00:00:00:01"
ROGUE_MAC = "02:bb:00:00:00:07"
CLIENT_MAC = "02:00:00:00:01:17"


def _reply(msg: str = "ack", xid: int = 0x1234, server: str = "198.18.5.1", mac: str = SERVER_MAC,
           server_id: str | None = "", router: str | None = "198.18.5.1", sport: int = 67, dport: int = 68,
           op: int = 2) -> bytes:
    """A server → client DHCP message for CLIENT_MAC, as a server on the LAN sends it."""
    options: list = [("message-type", msg)]
    if server_id is not None:
        options.append(("server_id", server_id or server))
    if router is not None:
        options.append(("router", router))
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=server, dst="255.255.255.255")
                 / UDP(sport=sport, dport=dport)
                 / BOOTP(op=op, xid=xid, yiaddr="198.18.5.117",
                         chaddr=bytes.fromhex(CLIENT_MAC.replace(":", "")).ljust(16, b"\0"))
                 / DHCP(options=[*options, "end"]))


class _Link:
    """The one thing a listener needs of a RawLink: subscribe, and an unsubscribe that is seen."""

    def __init__(self) -> None:
        self.handlers: list = []

    def subscribe(self, handler):
        self.handlers.append(handler)

        def unsubscribe() -> None:  # idempotent, as RawLink's is
            self.handlers = [h for h in self.handlers if h is not handler]

        return unsubscribe

    def deliver(self, data: bytes, time_: float, outgoing: bool = False) -> None:
        for handler in list(self.handlers):
            handler(Frame(data, time_, outgoing))


def test_ack_offer_and_nak_of_any_transaction():
    ack = parse_server_message(_reply("ack", xid=0xDEADBEEF), 3.5)
    assert ack == DhcpServerMessage(time=3.5, server_id=IPv4Address("198.18.5.1"), source_mac=SERVER_MAC,
                                    source_ip=IPv4Address("198.18.5.1"), message_type=5, client_mac=CLIENT_MAC,
                                    routers=[IPv4Address("198.18.5.1")])
    offer = parse_server_message(_reply("offer", xid=7, server="192.0.2.1", mac=ROGUE_MAC, router="192.0.2.1"))
    assert (offer.message_type, str(offer.server_id), offer.source_mac, offer.routers) == (
        2, "192.0.2.1", ROGUE_MAC, [IPv4Address("192.0.2.1")])
    nak = parse_server_message(_reply("nak", server_id=None, router=None))
    assert (nak.message_type, nak.server_id, nak.routers) == (6, None, [])


def test_not_a_server_answer():
    assert parse_server_message(_reply("request", op=1, sport=68, dport=67)) is None  # a client's renewal
    assert parse_server_message(_reply("ack", sport=68, dport=67)) is None
    assert parse_server_message(_reply("ack", op=1)) is None  # BOOTREQUEST from port 67 (a relay's copy)
    assert parse_server_message(_reply("inform")) is None
    assert parse_server_message(build_discover(CLIENT_MAC, 1)) is None
    assert parse_server_message(b"") is None


def test_offer_parser_is_unchanged_by_the_shared_slicer():
    """parse_offer and parse_server_message read one offer alike; parse_offer still wants its own xid."""
    frame = _reply("offer", xid=99)
    offer, heard = parse_offer(frame, 99, 1.0), parse_server_message(frame, 1.0)
    assert (offer.server_id, offer.source_mac, offer.source_ip, offer.routers) == (
        heard.server_id, heard.source_mac, heard.source_ip, heard.routers)
    assert parse_offer(frame, 98) is None and parse_offer(_reply("ack", xid=99), 99) is None


def test_listener_keeps_one_per_server_mac_and_type_until_stopped():
    link = _Link()
    listener = DhcpServerListener(link, cap=3)
    link.deliver(_reply("ack"), 1.0)
    link.deliver(_reply("ack", xid=2), 2.0)  # the same server acking another client: a copy
    link.deliver(_reply("offer"), 3.0)
    link.deliver(_reply("offer", server="192.0.2.1", mac=ROGUE_MAC, router="192.0.2.1"), 0.5)
    link.deliver(_reply("ack", server="192.0.2.1", mac=ROGUE_MAC), 4.0, outgoing=True)  # our own frame
    link.deliver(_reply("nak", server="198.18.5.9", mac=ROGUE_MAC), 5.0)  # beyond the cap
    got = listener.stop()
    assert [(str(m.server_id), m.source_mac, m.message_type, m.time) for m in got] == [
        ("192.0.2.1", ROGUE_MAC, 2, 0.5), ("198.18.5.1", SERVER_MAC, 5, 1.0), ("198.18.5.1", SERVER_MAC, 2, 3.0)]
    assert listener.dropped == 1 and link.handlers == []
    link.deliver(_reply("nak", server="198.18.5.8"), 6.0)  # after stop: not heard
    assert len(listener.stop()) == 3


ACK = _reply("ack")


@st.composite
def _mutated_ack(draw) -> bytes:
    """A real ACK with some bytes overwritten, then cut and given a tail of garbage."""
    data = bytearray(ACK)
    for pos, value in draw(st.lists(st.tuples(st.integers(0, len(ACK) - 1), st.integers(0, 255)), max_size=12)):
        data[pos] = value
    return bytes(data[:draw(st.integers(0, len(ACK)))]) + draw(st.binary(max_size=64))


@st.composite
def _hostile_options(draw) -> bytes:
    """A valid ACK header followed by options of any code and length, lying lengths included."""
    options = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=260)), max_size=20))
    return _ack_with_options(b"\x35\x01\x05" + b"".join(bytes([code, len(value) & 0xFF]) + value
                                                      for code, value in options))


def _ack_with_options(options: bytes) -> bytes:
    """ACK's addressing, BOOTP header and magic cookie, then ``options`` as given; lengths recomputed."""
    pkt = Ether(ACK)
    bootp_head = bytes(pkt[BOOTP])[:240]
    pkt[UDP].remove_payload()
    del pkt[IP].len, pkt[IP].chksum, pkt[UDP].len, pkt[UDP].chksum  # scapy recomputes them
    return bytes(pkt / Raw(bootp_head + options))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.binary(max_size=700), _mutated_ack(), _hostile_options()))
def test_server_message_parser_never_raises(data):
    msg = parse_server_message(data)
    assert msg is None or (msg.message_type in (2, 5, 6) and len(msg.routers) <= 16)


def test_hostile_options_reach_the_option_parser():
    """The generator above does exercise the options: a well-formed list parses."""
    routers = b"".join(IPv4Address(f"198.18.5.{i}").packed for i in range(1, 21))
    msg = parse_server_message(_ack_with_options(b"\x35\x01\x05\x03\x50" + routers + b"\xff"))
    assert msg is not None and len(msg.routers) == 16  # capped


# ------------------------------------------------------------------ lab


@pytest.fixture
def dhcp_lab(tmp_path: Path):
    """A switch, a real dnsmasq (198.18.81.1), a client and the probe; all removed whatever happens."""
    lab = new_lab_id("dp")
    sw, server, client, probe = (f"{lab}-{r}" for r in ("sw", "srv", "cl", "pr"))
    names, proc = [sw, server, client, probe], None
    try:
        netns.ip_batch(f"netns add {n}" for n in names)
        netns.ip_batch(["link add br0 type bridge", "link set br0 up"] + [
            line for n, role in ((server, "srv"), (client, "cl"), (probe, "pr")) for line in (
                f"link add p-{role} type veth peer name eth0 netns {n}", f"link set p-{role} master br0 up")],
            netns=sw)
        for n in (server, client, probe):
            netns.ip_batch(["link set lo up", "link set eth0 up"], netns=n)
        netns.ip_batch(["addr add 198.18.81.1/24 dev eth0"], netns=server)
        proc, record = netns.spawn(server, [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
            "--interface=eth0", "--bind-interfaces", "--user=root", "--dhcp-authoritative", "--no-ping",
            "--dhcp-range=198.18.81.100,198.18.81.150,255.255.255.0,1h", "--dhcp-option=option:router,198.18.81.1",
            f"--dhcp-leasefile={tmp_path / 'leases'}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
            f"--log-facility={tmp_path / 'dnsmasq.log'}", "--log-dhcp"], "dnsmasq", tmp_path / "dnsmasq.out")
        # Asked before it listens, the test's one DISCOVER would be lost; the deadline only catches a hang.
        deadline = time.monotonic() + 30
        while "DHCP, sockets bound" not in _text(tmp_path / "dnsmasq.log"):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dnsmasq.out").read_text()
            time.sleep(0.05)
        yield {"client": client, "probe": probe, "server_mac": netns.run_in(
            server, ["cat", "/sys/class/net/eth0/address"]).strip(), "leases": tmp_path / "leases"}
    finally:
        if proc is not None:
            netns.stop(record)
        netns.ip_batch((f"netns del {n}" for n in names if netns.netns_exists(n)), force=True)
        assert not any(netns.netns_exists(n) for n in names)


def _is_nak(frame: Frame) -> bool:
    msg = None if frame.outgoing else parse_server_message(frame.data, frame.time)
    return msg is not None and msg.message_type == 6


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _request(mac: str, xid: int, address: str) -> bytes:
    """An INIT-REBOOT DHCPREQUEST for an address the server did not give: it must answer NAK, broadcast."""
    chaddr = bytes.fromhex(mac.replace(":", ""))
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67) / BOOTP(op=1, xid=xid, flags=0x8000, chaddr=chaddr.ljust(16, b"\0"))
                 / DHCP(options=[("message-type", "request"), ("requested_addr", address), "end"]))


@pytest.mark.lab
def test_hears_a_real_server_answer_another_client(dhcp_lab):
    """A terminal's DISCOVER and REQUEST, with its own xids: the probe, sending nothing, hears the OFFER and NAK."""
    with netns.inside(dhcp_lab["probe"]):
        probe_link = RawLink("eth0")
    with netns.inside(dhcp_lab["client"]):
        client_link = RawLink("eth0")
    try:
        listener = DhcpServerListener(probe_link)
        nak = threading.Event()
        unsubscribe = probe_link.subscribe(lambda f: nak.set() if _is_nak(f) else None)
        client_mac = mac_str(client_link.mac)
        discovery = discover(client_link, client_mac, window=1.5, tries=1, xid=0x0BADCAFE)
        client_link.send(_request(client_mac, 0x0BADCAFF, "198.18.9.9"))
        assert nak.wait(10), "no NAK heard"  # it comes at once; the timeout only catches a hang
        unsubscribe()
        heard = listener.stop()
        probe_sent = probe_link.sent
    finally:
        probe_link.close()
        client_link.close()
    assert len(discovery.offers) == 1
    server = IPv4Address("198.18.81.1")
    assert [(m.message_type, m.server_id, m.source_mac, m.client_mac, m.routers) for m in heard] == [
        (2, server, dhcp_lab["server_mac"], client_mac, [server]), (6, server, dhcp_lab["server_mac"], client_mac, [])]
    assert probe_sent == 0 and dhcp_lab["leases"].read_text().strip() == ""
