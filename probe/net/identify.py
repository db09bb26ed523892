"""Venue identification: what a just-plugged café port says about which staged venue it belongs to.

The probe does not know yet where it is, so it must not speak as anyone: it
holds no address and takes no lease. It asks only in ways that need none:

* DHCP DISCOVERs (broadcast flag, fixed chaddr; :func:`probe.net.dhcp.discover`),
  whose OFFERs name the server, the offered address and the router;
* ARP requests in the RFC 5227 probe form (sender 0.0.0.0) for every
  registered gateway of every staged venue, paced, and repeated only for the
  addresses still silent, a bounded number of times spread over the window,
  so a burst of frame loss does not swallow every try;
* and it listens to every ARP packet on the link (who is on this LAN).

Nothing else is sent: no IP packet but the DHCP broadcast, nothing routed.
The verdict is :func:`probe.venue_match.match_venues`'s, from these signals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from ipaddress import IPv4Address

from probe.net.arp import parse_arp
from probe.net.dhcp import discover
# foreign.py's pacing is the same gentle ARP pacing this needs; one copy of it.
from probe.net.foreign import BROADCAST, UNSPECIFIED, build_request
from probe.net.foreign import send_paced
from probe.net.link import Frame, RawLink, mac_str
from probe.observations import ArpSender, DhcpDiscovery, GatewayAnswer, VenueSignals

__all__ = ["gather_signals", "gateway_targets", "MAX_ASKED", "MAX_HEARD"]

MAX_ASKED = 64  # distinct gateway addresses asked; a round stages a handful of venues, each with one or two
MAX_HEARD = 256  # distinct ARP senders kept; a café of 1,000 terminals says enough in its first 256


def gateway_targets(gateways: Iterable[IPv4Address]) -> list[IPv4Address]:
    """The addresses worth an ARP probe, in order, once each, at most :data:`MAX_ASKED`.

    Only unicast host addresses: nobody answers ARP for 0.0.0.0, loopback,
    multicast or the limited broadcast, and asking would only look odd.
    """
    out: list[IPv4Address] = []
    for address in dict.fromkeys(gateways):
        if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_reserved:
            continue
        if len(out) == MAX_ASKED:
            break
        out.append(address)
    return out


class _Heard:
    """ARP on the link while the probe listens; filled by the link's receiver thread."""

    def __init__(self, asked: list[IPv4Address], probe_mac: bytes, cap: int) -> None:
        self.asked = {int(a) for a in asked}
        self.probe_mac = probe_mac
        self.cap = cap
        self.answers: dict[tuple[int, bytes], int] = {}
        self.answered: set[int] = set()
        self.senders: dict[tuple[int, bytes], None] = {}
        self.dropped = 0
        self.lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        arp = parse_arp(frame.data)
        if frame.outgoing or arp is None or arp.sender_mac == self.probe_mac:
            return
        with self.lock:
            if arp.sender_ip != 0:  # 0.0.0.0 is another host's own probe: it names nobody
                key = (arp.sender_ip, arp.sender_mac)
                if key not in self.senders:
                    if len(self.senders) < self.cap:
                        self.senders[key] = None
                    else:
                        self.dropped += 1
            # An answer to our probe: a reply from an asked address, sent to our MAC or to the probe's 0.0.0.0.
            if arp.op == 2 and arp.sender_ip in self.asked and (
                    arp.target_mac == self.probe_mac or (arp.target_mac == BROADCAST and arp.target_ip == 0)):
                key = (arp.sender_ip, arp.sender_mac)
                self.answers[key] = self.answers.get(key, 0) + 1
                self.answered.add(arp.sender_ip)

    def silent(self, asked: list[IPv4Address]) -> list[IPv4Address]:
        with self.lock:
            return [a for a in asked if int(a) not in self.answered]


def gather_signals(link: RawLink, gateways: list[IPv4Address], *, window: float = 5.0, arp_tries: int = 6,
                   rate: float = 50.0, dhcp_tries: int = 5, heard_cap: int = MAX_HEARD) -> VenueSignals:
    """Listen and ask gently for ``window`` seconds; return what the café port said.

    The DHCP discovery runs for the whole window (servers check an address is
    free before they offer it, which takes seconds) on a worker thread, while
    this thread asks each of ``gateways`` by ARP probe: pass k at k·window/
    ``arp_tries`` seconds, only for the addresses still silent, at most
    ``rate`` frames per second. Every ARP sender heard is kept, up to
    ``heard_cap``. Raises ValueError for a window, rate or number of tries
    that leaves nothing to do.
    """
    if window <= 0 or rate <= 0 or arp_tries < 1 or dhcp_tries < 1 or heard_cap < 0:
        raise ValueError("need window > 0, rate > 0, tries ≥ 1 and heard_cap ≥ 0")
    start = time.monotonic()
    asked = gateway_targets(gateways)
    frames = {a: build_request(link.mac, UNSPECIFIED, a) for a in asked}
    heard = _Heard(asked, link.mac, heard_cap)
    found: list[DhcpDiscovery] = []
    failed: list[BaseException] = []

    def run_discovery() -> None:
        try:
            found.append(discover(link, mac_str(link.mac), window=window, tries=dhcp_tries,
                                  interval=window / dhcp_tries))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            failed.append(exc)

    unsubscribe = link.subscribe(heard.on_frame)
    worker = threading.Thread(target=run_discovery, name="identify-dhcp", daemon=True)
    arp_sent = 0
    try:
        worker.start()
        for k in range(arp_tries):
            if (delay := start + k * window / arp_tries - time.monotonic()) > 0:
                time.sleep(delay)
            pending = heard.silent(asked)
            if not pending:
                break
            send_paced(link, [frames[a] for a in pending], rate)
            arp_sent += len(pending)
    finally:
        worker.join()  # bounded: the discovery returns when its window is over
        unsubscribe()
    if failed:
        raise failed[0]
    dhcp = found[0]
    with heard.lock:
        answers = [GatewayAnswer(address=IPv4Address(ip), mac=mac_str(mac), count=n)
                   for (ip, mac), n in sorted(heard.answers.items())]
        senders = [ArpSender(address=IPv4Address(ip), mac=mac_str(mac)) for ip, mac in sorted(heard.senders)]
        dropped = heard.dropped
    return VenueSignals(interface=link.iface, probe_mac=mac_str(link.mac), asked=asked, gateway_answers=answers,
                        offers=dhcp.offers, heard=senders, heard_dropped=dropped, frames_sent=arp_sent + dhcp.sent,
                        seconds=round(time.monotonic() - start, 4))

