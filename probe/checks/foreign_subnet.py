"""FOREIGN-SUBNET 自组局域网 — no addresses outside the registered subnets on the café switch.

Why: seed 000 二(四)4 查看场所网络架构. Hosts speaking from addresses outside
the venue's filed subnets are a network the venue built on its own switch
(a home router's LAN side, PCs set up by hand): the network address must be
filed (条例 Art. 13) and customers reach the Internet only through the
venue's LAN (Art. 16).

How: every ARP packet heard during the run whose sender lies outside every
profile subnet (0.0.0.0 senders are RFC 5227 probes, and the probe's own
frames are its own: both skipped), and every answer to the probe's ARP
requests for common router addresses (rules/foreign_routers.yaml). Senders
in 169.254.0.0/16 are a PC that found no DHCP server and gave itself an
address: listed apart and noted, not failed.

Fails when any other foreign host was seen. Passes when the router
addresses were asked and nothing foreign was seen; inconclusive when they
were not asked (a quiet router is only found by asking) or nothing ran.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from probe.checks.context import CheckContext, host_label, listing
from probe.findings import Status, Verdict

CHECK_ID = "FOREIGN-SUBNET"

LINK_LOCAL = IPv4Network("169.254.0.0/16")
UNSPECIFIED = IPv4Address("0.0.0.0")


def _seen(ctx: CheckContext) -> dict[tuple[IPv4Address, str], dict]:
    """Every (address, MAC) outside the profile's subnets, with how it was seen."""
    obs, subnets = ctx.observations, ctx.profile.network.subnets
    own_mac = obs.run.probe.mac.lower()
    found: dict[tuple[IPv4Address, str], dict] = {}

    def add(address: IPv4Address, mac: str, how: str, asked_as: str | None = None) -> None:
        if address == UNSPECIFIED or any(address in net for net in subnets):
            return
        row = found.setdefault((address, mac), {"address": str(address), "mac": mac, "how": how,
                                                "asked_as": None})
        if row["how"] != how:
            row["how"] = "both"
        row["asked_as"] = row["asked_as"] or asked_as

    for packet in obs.passive_arp.packets:
        if packet.eth_src.lower() != own_mac:  # the probe's own requests, looped back
            add(packet.sender_ip, packet.sender_mac, "passive")
    for answer in obs.foreign_arp.answers if obs.foreign_arp else []:
        add(answer.address, answer.mac, "asked", answer.asked_as)
    return found


def check(ctx: CheckContext) -> Verdict:
    """List the hosts speaking from outside the registered subnets."""
    obs = ctx.observations
    found = _seen(ctx)
    ordered = [found[key] for key in sorted(found, key=lambda k: (int(k[0]), k[1]))]
    hosts = [row for row in ordered if IPv4Address(row["address"]) not in LINK_LOCAL]
    link_local = [row for row in ordered if IPv4Address(row["address"]) in LINK_LOCAL]
    asked = len(obs.foreign_arp.asked) if obs.foreign_arp else None
    packets = len(obs.passive_arp.packets)
    evidence = {
        "hosts": hosts,
        "link_local": link_local,
        "asked": asked,
        "arp_packets": packets,
        "arp_packets_dropped": obs.passive_arp.dropped,
        "subnets": [str(net) for net in ctx.profile.network.subnets],
        "observations": ["passive_arp.packets", "foreign_arp"],
    }
    limit = int(ctx.thresholds["summary_list_max"])
    values = {"count": len(hosts), "hosts": listing([host_label(h["address"], h["mac"]) for h in hosts], limit),
              "link_local_count": len(link_local),
              "link_local": listing([host_label(h["address"], h["mac"]) for h in link_local], limit),
              "packets": packets, "asked": asked}
    if hosts:
        reason = "foreign_hosts_and_link_local" if link_local else "foreign_hosts"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if asked is None:
        reason = "not_run" if packets == 0 else "not_asked"
        return Verdict(status=Status.INCONCLUSIVE, reason=reason, evidence=evidence, values=values)
    reason = "link_local_only" if link_local else "none_found"
    return Verdict(status=Status.PASS, reason=reason, evidence=evidence, values=values)
