"""The address a headless probe speaks from on an identified venue's LAN, claimed politely and given back.

A probe that was identified by listening (probe/net/identify.py) still has
no address; some collectors (services, SNMP, SSH) need one in the kernel.
:func:`claim_address` picks it in this order:

1. an address the interface already holds inside the venue's subnets: used, nothing added;
2. the profile's ``network.probe_address``, if free;
3. else a free address from the top of the first subnet downwards, skipping the
   network and broadcast addresses, the registered gateways and DHCP servers and
   whatever the caller reserves (servers, numbered terminals: :func:`reserved_addresses`),
   at most ``max_candidates`` of them.

"Free" is decided as RFC 5227 does: ARP probes with sender 0.0.0.0 (so the
probe announces nothing while it asks); any ARP from another MAC claiming
the address, or another host probing for it at the same time, is a
conflict. A profile address in conflict is refused, never replaced by
another: the technician chose it, and a PC sitting on it is worth a look.
The address is added with netlink (pyroute2, needs CAP_NET_ADMIN),
announced by gratuitous ARP, and removed on exit, also on exceptions.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from probe.iface import InterfaceError, inspect_interface
from probe.net.arp import parse_arp
from probe.net.foreign import UNSPECIFIED, build_request
from probe.net.link import Frame, RawLink, mac_str
from probe.profile import Network, VenueProfile

__all__ = ["AddressClaimError", "AddressConflict", "NoFreeAddress", "ClaimedAddress", "claim_address",
           "probe_addresses", "reserved_addresses", "free_candidates"]

PROBE_TRIES = 3  # RFC 5227 PROBE_NUM
# RFC 5227 spaces its probes 1–2 s for media where answers may take that long; a café switch answers in
# milliseconds, and a run that waited 6 s per address would make identification the slow part.
PROBE_SPACING = 0.2
PROBE_WAIT = 0.6  # listened after the last probe
ANNOUNCE_COUNT = 2  # RFC 5227 ANNOUNCE_NUM
ANNOUNCE_SPACING = 0.2
MAX_CANDIDATES = 8
MAX_RESERVED_TERMINALS = 65_536  # a /16 of numbered PCs; a typo of a million must not fill memory
EPERM = 1


class AddressClaimError(RuntimeError):
    """No address could be claimed; the message is one line, 中文 / English."""


class AddressConflict(AddressClaimError):
    """The profile's probe address is held by another host."""

    def __init__(self, address: IPv4Address, mac: str) -> None:
        self.address, self.mac = address, mac
        super().__init__(f"档案中的探针地址 {address} 已被 {mac} 占用，拒绝使用 / the profile's probe address "
                         f"{address} is in use by {mac}; refusing to take it")


class NoFreeAddress(AddressClaimError):
    """Every candidate address that was probed is in use (or none was left to probe)."""


class ClaimedAddress(IPv4Interface):
    """The interface address the run speaks from, and how it was chosen.

    An :class:`IPv4Interface` (what the run needs) with three more facts:
    ``how`` ("existing", "profile" or "picked"), ``added`` (this claim put it
    on the interface and takes it off again) and ``taken`` (addresses found
    in use while choosing, with the MAC that holds each).
    """

    how: Literal["existing", "profile", "picked"]
    added: bool
    taken: dict[IPv4Address, str]

    @classmethod
    def of(cls, interface: IPv4Interface, how: Literal["existing", "profile", "picked"], added: bool,
           taken: dict[IPv4Address, str] | None = None) -> "ClaimedAddress":
        claimed = cls(str(interface))
        claimed.how, claimed.added, claimed.taken = how, added, dict(taken or {})
        return claimed

    def __reduce__(self) -> tuple:
        # IPv4Interface pickles and copies as its text alone, which would drop the three facts.
        return (ClaimedAddress.of, (IPv4Interface(str(self)), self.how, self.added, self.taken))


# ---------------------------------------------------------------------------
# RFC 5227 probing


class _Conflicts:
    """ARP that claims one of the probed addresses for another MAC; filled by the link's receiver thread."""

    def __init__(self, addresses: Iterable[IPv4Address], own_mac: bytes) -> None:
        self.probed = {int(a) for a in addresses}
        self.own_mac = own_mac
        self.holders: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        arp = parse_arp(frame.data)
        if frame.outgoing or arp is None or arp.sender_mac == self.own_mac:
            return
        if arp.sender_ip in self.probed:
            holder = arp.sender_ip  # it answers for, announces or uses the address
        elif arp.sender_ip == 0 and arp.op == 1 and arp.target_ip in self.probed:
            holder = arp.target_ip  # another host probing for it at the same time (RFC 5227 §2.1.1)
        else:
            return
        with self.lock:
            self.holders.setdefault(holder, arp.sender_mac)

    def open(self, addresses: Sequence[IPv4Address]) -> list[IPv4Address]:
        with self.lock:
            return [a for a in addresses if int(a) not in self.holders]


def probe_addresses(link: RawLink, addresses: Sequence[IPv4Address], *, tries: int = PROBE_TRIES,
                    spacing: float = PROBE_SPACING, wait: float = PROBE_WAIT) -> dict[IPv4Address, str]:
    """ARP-probe every address ``tries`` times (sender 0.0.0.0); return those in use, with the holder's MAC.

    All addresses are probed together, ``spacing`` seconds between rounds, and
    ``wait`` seconds are listened after the last; an address already found in
    use is not probed again.
    """
    if tries < 1 or spacing < 0 or wait < 0:
        raise ValueError("need tries ≥ 1, spacing ≥ 0 and wait ≥ 0")
    addresses = list(dict.fromkeys(addresses))
    conflicts = _Conflicts(addresses, link.mac)
    frames = {a: build_request(link.mac, UNSPECIFIED, a) for a in addresses}
    unsubscribe = link.subscribe(conflicts.on_frame)
    try:
        for k in range(tries):
            if k:
                time.sleep(spacing)
            for address in conflicts.open(addresses):
                link.send(frames[address])
        time.sleep(wait)
    finally:
        unsubscribe()
    with conflicts.lock:
        return {IPv4Address(ip): mac_str(mac) for ip, mac in sorted(conflicts.holders.items())}


def announce(link: RawLink, address: IPv4Address, *, count: int = ANNOUNCE_COUNT,
             spacing: float = ANNOUNCE_SPACING) -> None:
    """Gratuitous ARP (sender and target both ``address``): the switch and the hosts learn the new holder."""
    frame = build_request(link.mac, address, address)
    for k in range(count):
        if k:
            time.sleep(spacing)
        link.send(frame)


# ---------------------------------------------------------------------------
# Choosing


def reserved_addresses(profile: VenueProfile) -> set[IPv4Address]:
    """Addresses a probe must not pick for itself: registered infrastructure, servers and numbered terminals.

    A powered-off PC's address is free to ARP but not to take: the PC would
    find it in use when it starts, so the terminals' numbering range is
    reserved too (machines 1 … licensed_terminals).
    """
    net = profile.network
    servers = profile.servers
    out = {*net.gateways, *net.dhcp_servers}
    out |= {ref.address for ref in (*servers.billing, *servers.audit)}
    out |= {src.address for src in servers.log_sources} | {target.address for target in servers.snmp}
    first = int(profile.terminals.first_address)
    last = min(0xFFFFFFFF, first + min(profile.venue.licensed_terminals, MAX_RESERVED_TERMINALS) - 1)
    out |= {IPv4Address(a) for a in range(first, last + 1)}
    return out


def free_candidates(network: Network, avoid: Iterable[IPv4Address] = (), limit: int = MAX_CANDIDATES) -> list[IPv4Address]:
    """Up to ``limit`` addresses to try, from the top of the first subnet down, skipping the reserved ones."""
    subnet: IPv4Network = network.subnets[0]
    skip = {*network.gateways, *network.dhcp_servers, *avoid}
    top, bottom = int(subnet.broadcast_address), int(subnet.network_address)
    if subnet.prefixlen < 31:  # RFC 3021: every address of a /31 (and the one of a /32) is a host
        top, bottom = top - 1, bottom + 1
    out: list[IPv4Address] = []
    for value in range(top, bottom - 1, -1):
        address = IPv4Address(value)
        if address in skip:
            continue
        out.append(address)
        if len(out) == limit:
            break
    return out


def _existing(iface: str, network: Network) -> IPv4Interface | None:
    try:
        state = inspect_interface(iface)
    except InterfaceError as exc:
        raise AddressClaimError(str(exc)) from None
    if not state.usable:
        # Probes into a port without carrier go nowhere, so every address would look free.
        raise AddressClaimError(f"接口 {iface} 未启用或未接网线 / interface {iface} is down or has no carrier")
    return next((a for a in state.addresses if network.subnet_of(a.ip) is not None), None)


# ---------------------------------------------------------------------------
# Claiming


def _netlink_error(exc: NetlinkError, what_zh: str, what_en: str) -> AddressClaimError:
    if exc.code == EPERM:
        return AddressClaimError(f"{what_zh}需要 CAP_NET_ADMIN 权限 / {what_en} needs CAP_NET_ADMIN")
    return AddressClaimError(f"{what_zh}失败 / {what_en} failed: {exc.args[-1] if exc.args else exc}")


@contextlib.contextmanager
def claim_address(iface: str, network: Network, link: RawLink, *, avoid: Iterable[IPv4Address] = (),
                  max_candidates: int = MAX_CANDIDATES, tries: int = PROBE_TRIES) -> Iterator[ClaimedAddress]:
    """Claim the address the run speaks from on ``iface`` for the block (see the module text for the order).

    ``link`` is the run's raw link on ``iface`` (probes and announcements go
    through it and into its capture). Yields a :class:`ClaimedAddress`;
    raises :class:`AddressConflict` when the profile's address is in use,
    :class:`NoFreeAddress` when no candidate was free, and
    :class:`AddressClaimError` for an interface or netlink problem. Whatever
    it added is removed when the block ends, however it ends.
    """
    if link.iface != iface:
        raise ValueError(f"the raw link is on {link.iface}, not on {iface}")
    existing = _existing(iface, network)
    if existing is not None:
        yield ClaimedAddress.of(existing, "existing", added=False)
        return
    how: Literal["profile", "picked"]
    if network.probe_address is not None:
        chosen, how = network.probe_address, "profile"
        taken = probe_addresses(link, [chosen.ip], tries=tries)
        if chosen.ip in taken:
            raise AddressConflict(chosen.ip, taken[chosen.ip])
    else:
        how, subnet = "picked", network.subnets[0]
        candidates = free_candidates(network, avoid, max_candidates)
        if not candidates:
            raise NoFreeAddress(f"网段 {subnet} 没有可尝试的地址（均已登记或保留） / no address of {subnet} is left "
                                "to try (all registered or reserved)")
        taken = probe_addresses(link, candidates, tries=tries)
        free = [a for a in candidates if a not in taken]
        if not free:
            raise NoFreeAddress(f"网段 {subnet} 顶部的 {len(candidates)} 个候选地址均已被占用 / none of the "
                                f"{len(candidates)} candidate addresses at the top of {subnet} is free")
        chosen = IPv4Interface(f"{free[0]}/{subnet.prefixlen}")
    with _added(iface, chosen):
        announce(link, chosen.ip)
        yield ClaimedAddress.of(chosen, how, added=True, taken=taken)


@contextlib.contextmanager
def _added(iface: str, address: IPv4Interface) -> Iterator[None]:
    """``address`` on ``iface`` for the block; removed after it, through the same netlink socket.

    The socket stays in the namespace it was opened in, so the removal finds
    the interface even if the caller's thread moved elsewhere meanwhile.
    """
    ipr = IPRoute()
    try:
        found = ipr.link_lookup(ifname=iface)
        if not found:
            raise AddressClaimError(f"没有接口 {iface} / no such interface: {iface}")
        index = found[0]
        spec = dict(index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        try:
            ipr.addr("add", **spec)
        except NetlinkError as exc:
            raise _netlink_error(exc, f"给 {iface} 添加地址 {address}", f"adding {address} to {iface}") from None
        try:
            yield
        finally:
            with contextlib.suppress(NetlinkError):  # already gone (interface removed): nothing left to undo
                ipr.addr("del", **spec)
    finally:
        ipr.close()
