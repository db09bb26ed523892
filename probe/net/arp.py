"""ARP discovery: a paced sweep that re-asks only the silent, and a passive listener.

The sweep sends one request per address at a fixed rate over the run's one
raw link, while the link's receiver matches replies to requests. After each
pass it waits a reply window learned from the answers so far, then asks
again only the addresses that stayed silent, a bounded number of times. On a
lossy switch that finds every host at a fraction of the frames a blind
retry of the whole range would cost.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from scapy.layers.l2 import ARP, Ether

from probe.net.link import Frame, RawLink, mac_str
from probe.net.oui import vendors
from probe.net.rounds import expected_misses, reply_window
from probe.observations import ArpConflict, ArpHost, ArpPacket, ArpSweep, PassiveArp, SweepRound

__all__ = ["ArpFrame", "parse_arp", "sweep", "sweep_targets", "PassiveArpListener", "SweepProgress"]

ETH_ARP = b"\x08\x06"
ETH_VLAN = b"\x81\x00"
MIN_FRAME = 60  # Ethernet minimum without FCS; veth would not pad for us


@dataclass(frozen=True, slots=True)
class ArpFrame:
    """The fields of an Ethernet/IPv4 ARP frame."""

    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse_arp(data: bytes) -> ArpFrame | None:
    """Parse an Ethernet (optionally 802.1Q-tagged) IPv4 ARP frame; None for anything else."""
    off = 14
    ethertype = data[12:14]
    if ethertype == ETH_VLAN:
        ethertype, off = data[16:18], 18
    if ethertype != ETH_ARP or len(data) < off + 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", data, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return ArpFrame(
        eth_src=data[6:12],
        op=op,
        sender_mac=data[off + 8:off + 14],
        sender_ip=int.from_bytes(data[off + 14:off + 18], "big"),
        target_mac=data[off + 18:off + 24],
        target_ip=int.from_bytes(data[off + 24:off + 28], "big"),
    )


def sweep_targets(subnets: Sequence[IPv4Network], exclude: Sequence[IPv4Address] = ()) -> list[IPv4Address]:
    """Every host address of the subnets, in order, without the excluded ones (the probe itself)."""
    skip = set(exclude)
    seen: set[IPv4Address] = set()
    out: list[IPv4Address] = []
    for net in subnets:
        for addr in net.hosts():
            if addr not in skip and addr not in seen:
                seen.add(addr)
                out.append(addr)
    return out


SweepProgress = Callable[[int, int, int, int], None]
"""progress(round, sent_this_round, to_send_this_round, hosts_found)"""


class _Replies:
    """Replies matched to requests, filled by the link's receiver thread."""

    def __init__(self, targets: set[int], probe_ip: int, probe_mac: bytes) -> None:
        self.targets = targets
        self.probe_ip = probe_ip
        self.probe_mac = probe_mac
        self.last_sent: dict[int, float] = {}
        self.round = 0
        # address -> {mac: (rtt, round)}; more than one MAC is a conflict, kept.
        self.by_ip: dict[int, dict[bytes, tuple[float, int]]] = {}
        self.rtts: list[float] = []
        self.changed = threading.Event()

    def on_frame(self, frame: Frame) -> None:
        arp = parse_arp(frame.data)
        if arp is None or arp.op != 2 or arp.sender_ip not in self.targets:
            return
        if arp.target_ip != self.probe_ip and arp.target_mac != self.probe_mac:
            return
        sent = self.last_sent.get(arp.sender_ip)
        if sent is None:
            return  # unsolicited: the passive listener keeps it
        macs = self.by_ip.setdefault(arp.sender_ip, {})
        if arp.sender_mac not in macs:
            rtt = max(0.0, frame.time - sent)
            macs[arp.sender_mac] = (rtt, self.round)
            self.rtts.append(rtt)
            self.changed.set()


def sweep(
    link: RawLink,
    subnets: Sequence[IPv4Network],
    probe_ip: IPv4Address,
    *,
    rate: float = 1000.0,
    retries: int = 5,
    min_wait: float = 0.05,
    max_wait: float = 0.5,
    loss_floor: float = 0.05,
    accepted_misses: float = 0.001,
    progress: SweepProgress | None = None,
) -> ArpSweep:
    """Find every host on ``subnets`` that answers ARP.

    ``rate`` caps requests per second; ``retries`` bounds how often a silent
    address is asked again; the reply window after each pass adapts between
    ``min_wait`` and ``max_wait`` seconds to the round-trip times seen.

    Retries stop early once the live hosts still expected to be missing fall
    below ``accepted_misses``, with the loss measured on this run
    (:mod:`probe.net.rounds`, the rule the NetBIOS survey follows too).
    """
    if rate <= 0 or retries < 0:
        raise ValueError("rate must be > 0 and retries >= 0")
    targets = sweep_targets(subnets, exclude=[probe_ip])
    ints = [int(a) for a in targets]
    replies = _Replies(set(ints), int(probe_ip), link.mac)
    template = bytearray(bytes(Ether(src=mac_str(link.mac), dst="ff:ff:ff:ff:ff:ff")
                               / ARP(op=1, hwsrc=mac_str(link.mac), psrc=str(probe_ip),
                                     hwdst="00:00:00:00:00:00", pdst="0.0.0.0")).ljust(MIN_FRAME, b"\0"))
    unsubscribe = link.subscribe(replies.on_frame)
    rounds: list[SweepRound] = []
    start = time.monotonic()
    interval = 1.0 / rate
    try:
        for rnd in range(1, retries + 2):
            pending = [ip for ip in ints if ip not in replies.by_ip]
            if not pending:
                break
            replies.round = rnd
            found_before = len(replies.by_ip)
            t0 = time.monotonic()
            for i, ip in enumerate(pending):
                due = t0 + i * interval
                delay = due - time.monotonic()
                if delay > 0.0005:
                    time.sleep(delay)
                template[38:42] = ip.to_bytes(4, "big")
                replies.last_sent[ip] = link.now()
                link.send(bytes(template))
                if progress and (i % 64 == 0 or i == len(pending) - 1):
                    progress(rnd, i + 1, len(pending), len(replies.by_ip))
            _listen(replies, pending, reply_window(replies.rtts, min_wait, max_wait))
            rounds.append(SweepRound(round=rnd, asked=len(pending), answered=len(replies.by_ip) - found_before,
                                     seconds=round(time.monotonic() - t0, 4)))
            if progress:
                progress(rnd, len(pending), len(pending), len(replies.by_ip))
            if rnd >= 2 and expected_misses([r.answered for r in rounds], loss_floor) < accepted_misses:
                break
    finally:
        unsubscribe()
    return _result(replies, subnets, len(targets), rate, rounds, time.monotonic() - start)


def _listen(replies: _Replies, pending: list[int], window: float) -> None:
    """Wait out the reply window, or less once every pending address has answered."""
    deadline = time.monotonic() + window
    while (left := deadline - time.monotonic()) > 0:
        if all(ip in replies.by_ip for ip in pending):
            return
        replies.changed.clear()
        replies.changed.wait(min(left, 0.01))


def _result(replies: _Replies, subnets: Sequence[IPv4Network], targets: int, rate: float,
            rounds: list[SweepRound], seconds: float) -> ArpSweep:
    pairs = [(ip, mac_str(mac), rtt, rnd) for ip, macs in sorted(replies.by_ip.items())
             for mac, (rtt, rnd) in macs.items()]
    names = vendors({mac for _, mac, _, _ in pairs})
    hosts = [ArpHost(address=IPv4Address(ip), mac=mac, vendor=names.get(mac), rtt_ms=round(rtt * 1000, 3),
                     answered_in_round=rnd) for ip, mac, rtt, rnd in pairs]
    conflicts = [ArpConflict(address=IPv4Address(ip), macs=sorted(mac_str(m) for m in macs))
                 for ip, macs in sorted(replies.by_ip.items()) if len(macs) > 1]
    return ArpSweep(subnets=list(subnets), targets=targets, rate_pps=rate, rounds=rounds, hosts=hosts,
                    conflicts=conflicts, seconds=round(seconds, 4))


class PassiveArpListener:
    """Records every ARP packet the link receives during the run, up to ``cap`` packets."""

    def __init__(self, link: RawLink, cap: int = 50_000) -> None:
        self._cap = cap
        self._packets: list[ArpPacket] = []
        self._dropped = 0
        self._unsubscribe = link.subscribe(self._on_frame)

    def _on_frame(self, frame: Frame) -> None:
        arp = parse_arp(frame.data)
        if arp is None:
            return
        if len(self._packets) >= self._cap:
            self._dropped += 1
            return
        self._packets.append(ArpPacket(
            time=round(frame.time, 6), op=arp.op, eth_src=mac_str(arp.eth_src),
            sender_mac=mac_str(arp.sender_mac), sender_ip=IPv4Address(arp.sender_ip),
            target_mac=mac_str(arp.target_mac), target_ip=IPv4Address(arp.target_ip)))

    def stop(self) -> PassiveArp:
        """Stop listening and return what was seen."""
        self._unsubscribe()
        return PassiveArp(packets=list(self._packets), dropped=self._dropped)
