"""The active DHCP codec: a DISCOVER that never asks for a lease, and an OFFER parser that never raises."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from probe.net.dhcp import _Offers, build_discover, parse_offer
from probe.net.link import Frame

MAC = "02:00:00:00:00:fa"
XID = 0x5EED1234
SERVER_MAC = "02:aa:00:00:00:01"


def _server_frame(msg: str = "offer", xid: int = XID, op: int = 2, sport: int = 67, dport: int = 68,
                  server: str = "198.18.5.1") -> bytes:
    return bytes(Ether(src=SERVER_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / IP(src=server, dst="255.255.255.255") / UDP(sport=sport, dport=dport)
                 / BOOTP(op=op, xid=xid, flags=0x8000, yiaddr="198.18.5.207",
                         chaddr=bytes.fromhex(MAC.replace(":", "")).ljust(16, b"\0"))
                 / DHCP(options=[("message-type", msg), ("server_id", server), ("lease_time", 43200),
                                 ("subnet_mask", "255.255.255.0"), ("router", "198.18.5.1"),
                                 ("name_server", "198.18.5.1", "9.9.9.9"), "end"]))


OFFER = _server_frame()


def test_discover_is_a_broadcast_discover_from_our_mac():
    pkt = Ether(build_discover(MAC, XID))
    assert pkt.src == MAC and pkt.dst == "ff:ff:ff:ff:ff:ff"
    assert (pkt[IP].src, pkt[IP].dst) == ("0.0.0.0", "255.255.255.255")
    assert (pkt[UDP].sport, pkt[UDP].dport) == (68, 67)
    bootp = pkt[BOOTP]
    assert bootp.op == 1 and bootp.xid == XID and bootp.flags & 0x8000
    assert bytes(bootp.chaddr)[:6] == bytes.fromhex(MAC.replace(":", ""))
    assert bootp.ciaddr == "0.0.0.0"
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (1,)
    assert "requested_addr" not in opts and "server_id" not in opts
    assert set(opts["param_req_list"][0]) >= {1, 3, 6, 15, 51, 54}
    assert opts["client_id"] == (b"\x01" + bytes.fromhex(MAC.replace(":", "")),)
    assert len(bytes(bootp)) >= 300
    # lengths and checksums are the ones scapy computes afresh
    again = Ether(bytes(pkt))
    del again[IP].chksum, again[UDP].chksum
    assert Ether(bytes(again))[IP].chksum == pkt[IP].chksum and Ether(bytes(again))[UDP].chksum == pkt[UDP].chksum


def test_offer_fields():
    offer = parse_offer(OFFER, XID, 1.25)
    assert offer is not None
    assert offer.server_id == IPv4Address("198.18.5.1")
    assert offer.source_mac == SERVER_MAC and offer.source_ip == IPv4Address("198.18.5.1")
    assert offer.offered_address == IPv4Address("198.18.5.207")
    assert offer.routers == [IPv4Address("198.18.5.1")]
    assert offer.dns == [IPv4Address("198.18.5.1"), IPv4Address("9.9.9.9")]
    assert offer.subnet_mask == IPv4Address("255.255.255.0")
    assert offer.lease_seconds == 43200 and offer.first_seen == 1.25


def test_not_our_offer():
    assert parse_offer(OFFER, XID + 1) is None
    assert parse_offer(_server_frame(msg="ack"), XID) is None
    assert parse_offer(_server_frame(msg="nak"), XID) is None
    assert parse_offer(_server_frame(op=1, sport=68, dport=67), XID) is None  # a client's message
    assert parse_offer(build_discover(MAC, XID), XID) is None  # our own DISCOVER, looped back
    assert parse_offer(b"", XID) is None


def test_offers_are_deduplicated_per_server_and_mac():
    offers = _Offers(XID)
    for t in (0.1, 1.1, 2.1):
        offers.on_frame(Frame(OFFER, t, False))
    offers.on_frame(Frame(_server_frame(server="198.18.5.9"), 1.5, False))
    offers.on_frame(Frame(OFFER, 2.5, True))  # outgoing copies are ours, never an answer
    got = sorted(offers.by_key.values(), key=lambda o: o.first_seen)
    assert [(str(o.server_id), o.copies, o.first_seen) for o in got] == [("198.18.5.1", 3, 0.1),
                                                                         ("198.18.5.9", 1, 1.5)]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=700))
def test_offer_parser_survives_garbage(data):
    parse_offer(data, XID)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(OFFER) - 1), st.integers(0, 255)), max_size=12),
       st.integers(0, len(OFFER)), st.binary(max_size=64))
def test_offer_parser_survives_mutated_offers(flips, cut, tail):
    data = bytearray(OFFER)
    for pos, value in flips:
        data[pos] = value
    parse_offer(bytes(data), XID)
    parse_offer(bytes(data[:cut]) + tail, XID)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=260)), max_size=20))
def test_offer_parser_survives_hostile_options(options):
    """Options of any code and length (including lying lengths) after a valid header."""
    head = OFFER[:14 + 20 + 8 + 240]
    body = b"".join(bytes([code, len(value) & 0xFF]) + value for code, value in options)
    data = bytearray(head + b"\x35\x01\x02" + body)
    data[14 + 2:14 + 4] = (len(data) - 14).to_bytes(2, "big")
    data[14 + 20 + 4:14 + 20 + 6] = (len(data) - 34).to_bytes(2, "big")
    parse_offer(bytes(data), XID)
