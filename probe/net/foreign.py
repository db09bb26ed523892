"""Foreign routers on the café switch: ARP requests for common router addresses outside the café's subnets.

A home router plugged into the café switch by one of its LAN ports (a
self-built LAN, 自组局域网) is quiet: it sends ARP only when it has traffic
of its own, so listening alone can miss it. Asking for the addresses such
routers ship with (rules/foreign_routers.yaml) makes it speak. Only ARP is
sent, nothing routed, and never for an address inside the café's subnets
(the sweep asks those).

Each address is asked twice per pass: in the RFC 5227 probe form (sender
0.0.0.0, which any stack answers without learning the probe's address) and
from the probe's own address (some stacks ignore probes). Addresses that
stayed silent are asked again, a bounded number of times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from scapy.layers.l2 import ARP, Ether

from probe.net.arp import MIN_FRAME, parse_arp
from probe.net.link import Frame, RawLink, mac_str
from probe.observations import ForeignArpAnswer, ForeignArpProbe

__all__ = ["ask_router_addresses", "build_request", "foreign_targets", "send_paced"]

BROADCAST = b"\xff" * 6
UNSPECIFIED = IPv4Address("0.0.0.0")
AskedAs = Literal["probe", "own_address"]


def build_request(src_mac: bytes, sender_ip: IPv4Address, target_ip: IPv4Address) -> bytes:
    """A broadcast ARP request for ``target_ip`` from ``src_mac``, padded to the Ethernet minimum.

    ``sender_ip`` 0.0.0.0 gives the RFC 5227 probe form.
    """
    mac = mac_str(src_mac)
    frame = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
             / ARP(op=1, hwsrc=mac, psrc=str(sender_ip), hwdst="00:00:00:00:00:00", pdst=str(target_ip)))
    return bytes(frame).ljust(MIN_FRAME, b"\0")  # veth does not pad short frames for us


def foreign_targets(addresses: Sequence[IPv4Address], subnets: Sequence[IPv4Network]) -> list[IPv4Address]:
    """The addresses to ask, in order, once each: those outside every one of the café's subnets."""
    return [a for a in dict.fromkeys(addresses) if not any(a in net for net in subnets)]


class _Answers:
    """Replies to the probe's requests, by (address, MAC); filled by the link's receiver thread."""

    def __init__(self, asked: list[IPv4Address], probe_ip: IPv4Address, probe_mac: bytes) -> None:
        self.asked = {int(a) for a in asked}
        self.probe_ip = int(probe_ip)
        self.probe_mac = probe_mac
        self.by_key: dict[tuple[int, bytes], AskedAs] = {}
        self.heard: set[int] = set()
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def on_frame(self, frame: Frame) -> None:
        arp = parse_arp(frame.data)
        if frame.outgoing or arp is None or arp.op != 2 or arp.sender_ip not in self.asked:
            return
        if arp.target_mac not in (self.probe_mac, BROADCAST):
            return  # an answer to another host's question: it says nothing of which of ours was heard
        # The reply's target is the request's sender: 0.0.0.0 answers the probe form.
        if arp.target_ip == 0:
            form: AskedAs = "probe"
        elif arp.target_ip == self.probe_ip:
            form = "own_address"
        else:
            return
        with self.lock:
            self.by_key.setdefault((arp.sender_ip, arp.sender_mac), form)  # the first form that was answered
            self.heard.add(arp.sender_ip)
        self.changed.set()

    def silent(self, addresses: list[IPv4Address]) -> list[IPv4Address]:
        with self.lock:
            return [a for a in addresses if int(a) not in self.heard]

    def result(self) -> list[ForeignArpAnswer]:
        with self.lock:
            items = sorted(self.by_key.items())
        return [ForeignArpAnswer(address=IPv4Address(ip), mac=mac_str(mac), asked_as=form)
                for (ip, mac), form in items]


def ask_router_addresses(link: RawLink, addresses: list[IPv4Address], probe_ip: IPv4Address,
                         subnets: list[IPv4Network], *, rate: float = 100.0, retries: int = 2,
                         window: float = 0.5) -> ForeignArpProbe:
    """Ask by ARP who holds each of ``addresses`` that lies outside ``subnets``; record who answered.

    ``rate`` caps frames per second (two per address and pass); after each
    pass the link is listened to for ``window`` seconds (less once every
    address asked in it has answered); silent addresses are asked again up to
    ``retries`` times. Every (address, MAC) that answered is kept, with the
    request form that it answered first.
    """
    if rate <= 0 or retries < 0 or window < 0:
        raise ValueError("need rate > 0, retries ≥ 0 and window ≥ 0")
    start = time.monotonic()
    asked = foreign_targets(addresses, subnets)
    frames = {a: (build_request(link.mac, UNSPECIFIED, a), build_request(link.mac, probe_ip, a)) for a in asked}
    answers = _Answers(asked, probe_ip, link.mac)
    unsubscribe = link.subscribe(answers.on_frame)
    try:
        for _ in range(retries + 1):
            pending = answers.silent(asked)
            if not pending:
                break
            send_paced(link, [f for a in pending for f in frames[a]], rate)
            _wait(answers, pending, window)
    finally:
        unsubscribe()
    return ForeignArpProbe(asked=asked, answers=answers.result(), seconds=round(time.monotonic() - start, 4))


def send_paced(link: RawLink, frames: list[bytes], rate: float) -> None:
    """Send ``frames`` evenly spaced at ``rate`` per second (a burst of ARP would be lost on a busy switch)."""
    t0 = time.monotonic()
    for i, frame in enumerate(frames):
        if (delay := t0 + i / rate - time.monotonic()) > 0:
            time.sleep(delay)
        link.send(frame)


def _wait(answers: _Answers, pending: list[IPv4Address], window: float) -> None:
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0 and answers.silent(pending):
        answers.changed.clear()
        answers.changed.wait(min(left, 0.01))
