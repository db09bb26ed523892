"""What every check receives: the observations, the profile, its thresholds, and the live-host inventory.

The inventory is derived once, purely, from the observations: which live
hosts are the café's infrastructure, which are terminals, and each
terminal's name and machine number. Checks share it instead of each
re-deriving it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address
from typing import Any, Literal

from probe.observations import Observations, SignatureMatch
from probe.signatures import SERVER_ROLES
from probe.profile import VenueProfile

__all__ = ["CheckContext", "LiveHost", "host_label", "listing", "matched_ids", "role_matches", "staged_ids"]


@dataclass(frozen=True)
class LiveHost:
    """A host that answered ARP, with what is known about it."""

    address: IPv4Address
    mac: str
    vendor: str | None
    name: str | None
    name_source: Literal["netbios", "dhcp"] | None
    number: int | None
    number_source: Literal["mac_table", "name"] | None

    def brief(self) -> dict[str, Any]:
        return {"address": str(self.address), "mac": self.mac, "name": self.name}


@dataclass(frozen=True)
class CheckContext:
    """Inputs of one check: pure data, no handles."""

    observations: Observations
    profile: VenueProfile
    thresholds: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def infrastructure_addresses(self) -> frozenset[IPv4Address]:
        """Registered non-terminal addresses: gateways, DHCP and servers, and the probe itself."""
        p = self.profile
        servers = p.servers
        addrs = {*p.network.gateways, *p.network.dhcp_servers, self.observations.run.probe.address}
        addrs.update(s.address for s in servers.billing)
        addrs.update(s.address for s in servers.audit)
        addrs.update(s.address for s in servers.log_sources)
        addrs.update(s.address for s in servers.snmp)
        return frozenset(addrs)

    @cached_property
    def live_hosts(self) -> list[LiveHost]:
        """Every (address, MAC) that answered the sweep, named and numbered where possible."""
        obs, profile = self.observations, self.profile
        netbios = {}
        for answer in obs.netbios.answers:
            name = answer.machine_name
            if name:
                netbios[(answer.address, answer.mac)] = name
        dhcp = {}
        for seen in sorted(obs.dhcp_hostnames, key=lambda d: d.time):
            dhcp[seen.mac] = seen.hostname  # the latest name a MAC announced
        mac_table = profile.terminals.mac_table
        hosts = []
        for h in obs.arp.hosts:
            name, source = netbios.get((h.address, h.mac)), "netbios"
            if name is None and h.mac in dhcp:
                name, source = dhcp[h.mac], "dhcp"
            number, number_source = None, None
            if h.mac in mac_table:
                number, number_source = mac_table[h.mac], "mac_table"
            elif name is not None and (n := profile.machine_number(name)) is not None:
                number, number_source = n, "name"
            hosts.append(LiveHost(address=h.address, mac=h.mac, vendor=h.vendor, name=name,
                                  name_source=source if name else None, number=number,
                                  number_source=number_source))
        return hosts

    @cached_property
    def acting_infrastructure(self) -> frozenset[tuple[IPv4Address, str]]:
        """(address, MAC) of live hosts seen acting as routers, DHCP servers, servers or cameras, registered or not.

        A host that forwarded the probe's packets or answered as a DHCP server
        is network gear, whatever else it is: counting it as a terminal would
        blur TERMINAL-COUNT and IP-MAP with what DUAL-UPLINK and ROGUE-DHCP
        already report.
        """
        obs = self.observations
        acting = {(f.address, f.mac) for f in (obs.forwarding.forwarders if obs.forwarding else [])}
        offers = obs.dhcp.offers if obs.dhcp else []
        acting.update((o.source_ip, o.source_mac) for o in offers)
        acting.update((m.source_ip, m.source_mac) for m in obs.dhcp_server_messages)
        # A host answering as a server (billing, audit, diskless, database, NVR) or as a camera is the
        # venue's equipment, not a customer's PC: the same reasoning, for SERVER-COUNT and VIDEO-SYSTEM.
        if obs.services is not None:
            acting.update((m.address, m.mac) for m in obs.services.matches if m.role in (*SERVER_ROLES, "camera"))
        if obs.cameras is not None:
            swept: dict[IPv4Address, set[str]] = {}
            for h in obs.arp.hosts:
                swept.setdefault(h.address, set()).add(h.mac)
            for c in obs.cameras.cameras:
                acting.update((c.address, mac) for mac in ([c.mac] if c.mac else sorted(swept.get(c.address, ()))))
        return frozenset(acting)

    @cached_property
    def terminals(self) -> list[LiveHost]:
        """Live hosts that are neither registered infrastructure nor seen acting as such: the café's terminals."""
        infra, acting = self.infrastructure_addresses, self.acting_infrastructure
        return [h for h in self.live_hosts if h.address not in infra and (h.address, h.mac) not in acting]


def listing(items: Sequence[str], limit: int) -> str:
    """Items joined for a summary sentence, at most ``limit`` of them, then how many more ("… (+3)")."""
    shown = ", ".join(items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def host_label(address: object, mac: str) -> str:
    """One host as a summary names it: ``198.18.7.2 (02:00:5e:00:00:07)``."""
    return f"{address} ({mac})"


def role_matches(ctx: CheckContext, roles: Iterable[str]) -> list[SignatureMatch]:
    """The service scan's matches of ``roles``, by address, MAC, port, signature (none when it did not run)."""
    wanted = set(roles)
    scan = ctx.observations.services
    found = [m for m in (scan.matches if scan else []) if m.role in wanted]
    return sorted(found, key=lambda m: (int(m.address), m.mac, m.port, m.signature))


def matched_ids(matches: Iterable[SignatureMatch]) -> list[str]:
    """The ids of the signatures that matched, each once, sorted."""
    return sorted({m.signature for m in matches})


def staged_ids(ctx: CheckContext, role: str) -> list[str]:
    """Ids of the venue profile's own signatures of ``role`` that the scan used.

    Shipped signatures are not in the check's inputs (checks do no I/O), but
    café products are undocumented and their signatures come from the venue
    profile (LEGAL.md "Café software"): these ids say whether the scan could
    recognise the venue's product at all.
    """
    scan = ctx.observations.services
    used = set(scan.signatures) if scan else set()
    return sorted(s.id for s in ctx.profile.servers.signatures if s.role == role and s.id in used)
