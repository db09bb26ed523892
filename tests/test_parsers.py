"""Frame parsers of the collectors: hostile bytes give None, never an exception."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings, strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from probe.net.arp import parse_arp, sweep_targets
from probe.net.dhcp import parse_dhcp_hostname
from probe.net.link import parse_udp


def test_parse_arp_reply_plain_and_tagged():
    reply = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ARP(
        op=2, hwsrc="02:00:00:00:00:01", psrc="198.18.10.7", hwdst="02:00:00:00:00:02", pdst="198.18.10.253")
    for frame in (bytes(reply), bytes(Ether(src="02:00:00:00:00:01") / Dot1Q(vlan=10) / reply[ARP])):
        arp = parse_arp(frame)
        assert arp is not None and arp.op == 2
        assert IPv4Address(arp.sender_ip) == IPv4Address("198.18.10.7")
        assert arp.sender_mac == bytes.fromhex("020000000001")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_never_raise_on_garbage(data):
    parse_arp(data)
    parse_udp(data)
    parse_dhcp_hostname(data, 0.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=400), st.integers(0, 399))
def test_dhcp_parser_survives_mutated_requests(noise, cut):
    good = bytes(Ether() / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                 / BOOTP(op=1, chaddr=bytes.fromhex("020000000009")) / DHCP(options=[
                     ("message-type", "request"), ("hostname", b"WB-009"), ("requested_addr", "198.18.10.9"), "end"]))
    seen = parse_dhcp_hostname(good, 1.5)
    assert seen is not None and seen.hostname == "WB-009" and seen.mac == "02:00:00:00:00:09"
    assert seen.address == IPv4Address("198.18.10.9")
    parse_dhcp_hostname(good[:cut] + noise, 1.0)


def test_sweep_targets_skip_probe_network_and_broadcast():
    targets = sweep_targets([IPv4Network("198.18.20.0/22")], exclude=[IPv4Address("198.18.23.253")])
    assert len(targets) == 1021
    assert IPv4Address("198.18.20.0") not in targets and IPv4Address("198.18.23.255") not in targets
