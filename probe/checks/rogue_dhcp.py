"""ROGUE-DHCP 私设DHCP / 自组局域网 — only the registered DHCP servers answer on the café LAN.

Why: seed 000 二(四)4 查看场所网络架构. A second DHCP server is a private
router or a second network on the venue's switch: customers' computers may
reach the Internet only through the venue's LAN (条例 Art. 16) over its
filed network address (Art. 13).

How: every server that answered the probe's DISCOVER (no lease taken), and
every OFFER, ACK or NAK heard passively during the run (terminals renewing
their leases), one entry per (server id, else source address; MAC). A server
is registered when that address is one of the profile's ``dhcp_servers``
and the frame came from the MAC the ARP sweep found for it: the registered
address answered from another MAC is impersonation. When the sweep did not
see the address, the address alone is accepted.

Fails on any unregistered server, also when the profile registers none.
Passes when every server is registered, or when none answered (said so).
Inconclusive when neither the discovery nor the passive listener ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from probe.checks.context import CheckContext, host_label, listing
from probe.findings import Status, Verdict

CHECK_ID = "ROGUE-DHCP"


@dataclass
class _Server:
    server_id: IPv4Address | None
    source_ip: IPv4Address
    mac: str
    router: IPv4Address | None = None
    seen: set[str] = field(default_factory=set)

    @property
    def address(self) -> IPv4Address:
        return self.server_id or self.source_ip


def _servers(ctx: CheckContext) -> list[_Server]:
    """Discovery offers and passive server messages, merged per (server id or source address, MAC)."""
    obs = ctx.observations
    found: dict[tuple[IPv4Address, str], _Server] = {}
    offers = obs.dhcp.offers if obs.dhcp else []
    heard = [(o.server_id, o.source_ip, o.source_mac, o.routers, "discover") for o in offers]
    heard += [(m.server_id, m.source_ip, m.source_mac, m.routers, "passive") for m in obs.dhcp_server_messages]
    for server_id, source_ip, mac, routers, how in heard:
        entry = found.setdefault((server_id or source_ip, mac), _Server(server_id, source_ip, mac))
        entry.router = entry.router or (routers[0] if routers else None)  # NAKs carry no router
        entry.seen.add(how)
    return sorted(found.values(), key=lambda s: (int(s.address), s.mac))


def check(ctx: CheckContext) -> Verdict:
    """Compare every DHCP server heard with the registered ones."""
    obs, registered = ctx.observations, set(ctx.profile.network.dhcp_servers)
    swept: dict[IPv4Address, set[str]] = {}
    for host in obs.arp.hosts:
        swept.setdefault(host.address, set()).add(host.mac)
    servers, rows, rogue, impersonated = _servers(ctx), [], [], []
    for s in servers:
        known_macs = swept.get(s.address)
        ok = s.address in registered and (not known_macs or s.mac in known_macs)
        rows.append({"server_id": str(s.server_id) if s.server_id else None, "source_ip": str(s.source_ip),
                     "mac": s.mac, "router": str(s.router) if s.router else None, "registered": ok,
                     "seen": "both" if len(s.seen) == 2 else next(iter(s.seen))})
        if not ok:
            rogue.append(host_label(s.address, s.mac))
            if s.address in registered:
                impersonated.append(f"{s.address} ({s.mac} ≠ {', '.join(sorted(known_macs or ()))})")
    evidence = {
        "servers": rows,
        "registered": sorted(str(a) for a in registered),
        "discover_sent": obs.dhcp.sent if obs.dhcp else None,
        "passive_messages": len(obs.dhcp_server_messages),
        "observations": ["dhcp.offers", "dhcp_server_messages", "arp.hosts"],
    }
    limit = int(ctx.thresholds["summary_list_max"])
    if obs.dhcp is None and not obs.dhcp_server_messages:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence)
    if not servers:
        return Verdict(status=Status.PASS, reason="no_server", evidence=evidence,
                       values={"sent": obs.dhcp.sent, "window": obs.dhcp.window_seconds})
    values = {"count": len(rogue), "total": len(servers), "rogue": listing(rogue, limit)}
    if rogue and not registered:
        return Verdict(status=Status.FAIL, reason="none_registered", evidence=evidence, values=values)
    if impersonated:
        return Verdict(status=Status.FAIL, reason="impersonated", evidence=evidence,
                       values={**values, "impersonated": listing(impersonated, limit)})
    if rogue:
        return Verdict(status=Status.FAIL, reason="unregistered", evidence=evidence, values=values)
    return Verdict(status=Status.PASS, reason="all_registered", evidence=evidence,
                   values={"total": len(servers),
                           "servers": listing([host_label(s.address, s.mac) for s in servers], limit)})
