"""DHCP: host names seen passively (option 12), and every server that answers a DISCOVER.

The passive listener never sends anything; its BOOTP part is dissected by
scapy, and any frame scapy cannot make sense of is skipped, never raised.

The active part (:func:`discover`) broadcasts a few DHCPDISCOVERs from the
probe's own MAC and collects every OFFER over a window. It never sends a
REQUEST, so no server hands out a lease. Offers come from the network, so
:func:`parse_offer` slices them by hand with bounds on everything and returns
None for anything it does not understand.

:class:`DhcpServerListener` hears every server's OFFER, ACK or NAK to any
client for the whole run, through the same hand slicer (ROGUE-DHCP).
"""

from __future__ import annotations

import secrets
import struct
import threading
import time
from ipaddress import IPv4Address
from typing import NamedTuple

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from probe.net.link import Frame, RawLink, Udp, mac_str, parse_udp
from probe.observations import DhcpDiscovery, DhcpHostname, DhcpOffer, DhcpServerMessage

__all__ = ["DhcpHostnameListener", "parse_dhcp_hostname", "build_discover", "parse_offer", "discover",
           "DhcpServerListener", "parse_server_message"]

MAX_HOSTNAME = 255


def parse_dhcp_hostname(data: bytes, time_: float) -> DhcpHostname | None:
    """The host name a DHCP client message carries, or None (not DHCP, no name, garbage)."""
    udp = parse_udp(data)
    if udp is None or udp.dport != 67:  # client → server messages carry the client's own name
        return None
    try:
        bootp = BOOTP(udp.payload)
        if bootp.op != 1 or DHCP not in bootp:
            return None
        opts = {o[0]: o[1:] for o in bootp[DHCP].options if isinstance(o, tuple) and len(o) >= 2}
        raw = opts.get("hostname", (None,))[0]
        if not isinstance(raw, bytes) or not raw or len(raw) > MAX_HOSTNAME:
            return None
        name = raw.rstrip(b"\0").decode("utf-8", errors="replace")
        if not name.isprintable():
            return None
        requested = opts.get("requested_addr", (None,))[0]
        address = IPv4Address(requested) if requested else (
            IPv4Address(bootp.ciaddr) if bootp.ciaddr != "0.0.0.0" else None)
        msg_type = opts.get("message-type", (None,))[0]
        return DhcpHostname(time=round(time_, 6), mac=mac_str(bytes(bootp.chaddr)[:6]), hostname=name,
                            address=address, message_type=msg_type if isinstance(msg_type, int) else None)
    except Exception:  # noqa: BLE001 - hostile bytes: skip the frame, never crash the run
        return None


class DhcpHostnameListener:
    """Collects DHCP host names seen on the link for as long as it is subscribed."""

    def __init__(self, link: RawLink, cap: int = 10_000) -> None:
        self._seen: list[DhcpHostname] = []
        self._cap = cap
        self._unsubscribe = link.subscribe(self._on_frame)

    def _on_frame(self, frame: Frame) -> None:
        if len(self._seen) < self._cap and (seen := parse_dhcp_hostname(frame.data, frame.time)):
            self._seen.append(seen)

    def stop(self) -> list[DhcpHostname]:
        """Stop listening and return what was seen."""
        self._unsubscribe()
        return list(self._seen)


# ---------------------------------------------------------------------------
# Active: DISCOVER out, every OFFER in (never a REQUEST)
# ---------------------------------------------------------------------------

MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTP_FIXED = 236  # op .. file, before the magic cookie (RFC 2131 §2)
BROADCAST_FLAG = 0x8000
DISCOVER, OFFER = 1, 2
# subnet mask, router, DNS, domain name, lease time, server id
PARAMETER_REQUEST = bytes([1, 3, 6, 15, 51, 54])
MAX_ADDRESSES = 16  # routers or DNS servers kept per offer; more is padding or an attack
MAX_OFFERS = 64  # distinct (server, MAC) pairs kept per discovery


def build_discover(mac: str, xid: int) -> bytes:
    """A broadcast Ethernet/IPv4/UDP 68→67 DHCPDISCOVER from ``mac`` with transaction id ``xid``.

    The broadcast flag makes servers broadcast their offers: without it they
    unicast to a chaddr the probe's kernel does not own an address for yet
    (DESIGN.md §9). No requested-address option, no REQUEST ever follows.
    """
    chaddr = bytes.fromhex(mac.replace(":", ""))
    frame = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
             / IP(src="0.0.0.0", dst="255.255.255.255", ttl=64)
             / UDP(sport=68, dport=67)
             / BOOTP(op=1, htype=1, hlen=6, xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr.ljust(16, b"\0"))
             / DHCP(options=[("message-type", "discover"),
                             ("param_req_list", list(PARAMETER_REQUEST)),
                             ("client_id", b"\x01" + chaddr),
                             "end"]))
    # Old BOOTP relays drop messages shorter than 300 bytes of BOOTP (RFC 1542 §3.1.1).
    udp_payload = len(frame[BOOTP])
    if udp_payload < 300:
        frame = frame / (b"\0" * (300 - udp_payload))  # lengths and checksums are computed on build
    return bytes(frame)


def _options(data: bytes) -> dict[int, bytes] | None:
    """The options after the magic cookie, repeated ones joined (RFC 3396); None if malformed."""
    out: dict[int, bytes] = {}
    i = BOOTP_FIXED + 4
    while i < len(data):
        code = data[i]
        if code == 255:
            return out
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            return None
        length = data[i + 1]
        value = data[i + 2:i + 2 + length]
        if len(value) != length:
            return None
        out[code] = out.get(code, b"") + value
        i += 2 + length
    return out  # no end option: tolerated, as real servers' padding sometimes cuts it


def _addresses(raw: bytes | None) -> list[IPv4Address]:
    """A list-of-addresses option; empty when absent or not a multiple of four bytes."""
    if not raw or len(raw) % 4:
        return []
    return [IPv4Address(raw[i:i + 4]) for i in range(0, min(len(raw), 4 * MAX_ADDRESSES), 4)]


def _one_address(raw: bytes | None) -> IPv4Address | None:
    return IPv4Address(raw) if raw is not None and len(raw) == 4 else None


class _ServerReply(NamedTuple):
    """The parts of a server → client DHCP message that every reader of one needs."""

    udp: Udp
    bootp: bytes
    xid: int
    message_type: int
    options: dict[int, bytes]


def _server_reply(data: bytes) -> _ServerReply | None:
    """A BOOTREPLY from UDP 67 to 68 with the magic cookie and a message type (option 53), or None.

    Slices only; may raise ValueError, IndexError or struct.error on hostile
    bytes, which the public parsers turn into None.
    """
    udp = parse_udp(data)
    if udp is None or udp.sport != 67 or udp.dport != 68:
        return None
    bootp = udp.payload
    if len(bootp) < BOOTP_FIXED + 4 or bootp[0] != 2 or bootp[BOOTP_FIXED:BOOTP_FIXED + 4] != MAGIC_COOKIE:
        return None
    opts = _options(bootp)
    if opts is None or len(kind := opts.get(53, b"")) != 1:
        return None
    return _ServerReply(udp, bootp, struct.unpack_from("!I", bootp, 4)[0], kind[0], opts)


def parse_offer(data: bytes, xid: int, time_: float = 0.0) -> DhcpOffer | None:
    """The DHCPOFFER for transaction ``xid`` that this Ethernet frame carries, or None (anything else)."""
    try:
        reply = _server_reply(data)
        if reply is None or reply.xid != xid or reply.message_type != OFFER:
            return None
        udp, bootp, opts = reply.udp, reply.bootp, reply.options
        lease = opts.get(51)
        return DhcpOffer(
            server_id=_one_address(opts.get(54)), source_mac=mac_str(udp.eth_src), source_ip=IPv4Address(udp.src),
            offered_address=IPv4Address(bootp[16:20]), routers=_addresses(opts.get(3)),
            dns=_addresses(opts.get(6)), subnet_mask=_one_address(opts.get(1)),
            lease_seconds=struct.unpack("!I", lease)[0] if lease is not None and len(lease) == 4 else None,
            first_seen=round(time_, 6))
    except (ValueError, IndexError, struct.error):  # hostile bytes: not an offer we understand
        return None


class _Offers:
    """Offers for one xid, deduplicated by (server id, source MAC); filled by the link's receiver thread."""

    def __init__(self, xid: int, cap: int = MAX_OFFERS) -> None:
        self.xid = xid
        self.cap = cap
        self.by_key: dict[tuple[IPv4Address | None, str], DhcpOffer] = {}
        self.lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        if frame.outgoing or (offer := parse_offer(frame.data, self.xid, frame.time)) is None:
            return
        key = (offer.server_id, offer.source_mac)
        with self.lock:
            seen = self.by_key.get(key)
            if seen is not None:
                seen.copies += 1
            elif len(self.by_key) < self.cap:
                self.by_key[key] = offer


def discover(link: RawLink, probe_mac: str, window: float = 5.0, tries: int = 5, interval: float = 1.0,
             xid: int | None = None) -> DhcpDiscovery:
    """Broadcast ``tries`` DISCOVERs ``interval`` apart and collect every OFFER for ``window`` seconds.

    All tries carry the same xid and chaddr, so each server keeps at most one
    pending offer for the probe. The tries are sent even after a first offer
    arrived: a second (rogue) server that lost the race, or that is slow
    because it pings the address first, is still heard. The window is always
    waited out in full for the same reason. Five seconds by default because
    servers check an address is free before offering it (dnsmasq pings it
    for 3 s, ISC dhcpd for 1 s), so a first offer can come 3 s late. Five
    tries, the last ones after that check is over: a server that ignores
    DISCOVERs while it pings answers only one of the early ones, and on a
    lossy switch that one offer may be lost; the later tries are answered at
    once from the server's finished check.
    """
    if tries < 1 or interval < 0 or window <= 0 or interval * (tries - 1) >= window:
        raise ValueError("need tries ≥ 1 and every try inside the window")
    xid = secrets.randbits(32) if xid is None else xid
    frame = build_discover(probe_mac, xid)
    offers = _Offers(xid)
    unsubscribe = link.subscribe(offers.on_frame)
    t0 = time.monotonic()
    sent = 0
    try:
        for n in range(tries):
            delay = t0 + n * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            link.send(frame)
            sent += 1
        if (left := t0 + window - time.monotonic()) > 0:
            time.sleep(left)
    finally:
        unsubscribe()
    with offers.lock:
        found = sorted(offers.by_key.values(), key=lambda o: o.first_seen)
    return DhcpDiscovery(xid=xid, chaddr=probe_mac.lower(), sent=sent, window_seconds=window, offers=found,
                         seconds=round(time.monotonic() - t0, 4))


# ---------------------------------------------------------------------------
# Passive: every server's answer to any client, for the whole run
# ---------------------------------------------------------------------------

ACK, NAK = 5, 6
SERVER_MESSAGES = frozenset({OFFER, ACK, NAK})
MAX_SERVER_MESSAGES = 256  # distinct (server, MAC, type) kept per run; a flood beyond is counted only


def parse_server_message(data: bytes, time_: float = 0.0) -> DhcpServerMessage | None:
    """The OFFER, ACK or NAK of any transaction that this Ethernet frame carries, or None (anything else).

    Terminals renew their leases all day; a second server answering them is
    heard here even when it lost the race for the probe's own DISCOVER.
    """
    try:
        reply = _server_reply(data)
        if reply is None or reply.message_type not in SERVER_MESSAGES:
            return None
        opts = reply.options
        return DhcpServerMessage(
            time=round(time_, 6), server_id=_one_address(opts.get(54)), source_mac=mac_str(reply.udp.eth_src),
            source_ip=IPv4Address(reply.udp.src), message_type=reply.message_type,
            client_mac=mac_str(reply.bootp[28:34]), routers=_addresses(opts.get(3)))
    except (ValueError, IndexError, struct.error):  # hostile bytes: not a message we understand
        return None


class DhcpServerListener:
    """Collects DHCP server messages seen on the link, one per (server id, source MAC, type), up to ``cap``."""

    def __init__(self, link: RawLink, cap: int = MAX_SERVER_MESSAGES) -> None:
        self._cap = cap
        self._by_key: dict[tuple[IPv4Address | None, str, int], DhcpServerMessage] = {}
        self._lock = threading.Lock()
        self.dropped = 0
        self._unsubscribe = link.subscribe(self._on_frame)

    def _on_frame(self, frame: Frame) -> None:
        if frame.outgoing or (msg := parse_server_message(frame.data, frame.time)) is None:
            return
        key = (msg.server_id, msg.source_mac, msg.message_type)
        with self._lock:
            if key in self._by_key:
                return
            if len(self._by_key) < self._cap:
                self._by_key[key] = msg
            else:
                self.dropped += 1

    def stop(self) -> list[DhcpServerMessage]:
        """Stop listening and return what was seen, oldest first."""
        self._unsubscribe()
        with self._lock:
            return sorted(self._by_key.values(), key=lambda m: m.time)
