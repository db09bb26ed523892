"""DUAL-UPLINK 双线路、专线对外私接 — the café reaches the Internet only over its registered lines.

Why: seed 000 二(四)4① 是否存在使用双计费系统、双线路情况. Customers' computers
may reach the Internet only through the venue's LAN (条例 Art. 16) over its
fixed, filed network address (Art. 8, 13); a second line bypasses the
filed address and the audit system.

How, from three sources:

* forwarding test: every live host that forwarded a packet addressed to the
  external target; one that is not a registered gateway is a second way out;
* egress: where each forwarder's line leads (the first hop past it, when the
  test followed it); with ``network.egress`` registered, any other egress
  fails; without it, more distinct egresses than registered gateways fails;
* SNMP on the registered routers: interfaces up with an address outside the
  café's subnets (WAN) and distinct default routes, compared with the
  router's registered ``uplinks``.

Fails on any of these. Otherwise inconclusive when the forwarding test did
not run or a router could not be read over SNMP. A registered gateway that
did not forward is noted (its firewall may drop the test), not failed.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from probe.checks.context import CheckContext, host_label, listing
from probe.findings import Status, Verdict
from probe.observations import SnmpDevice

CHECK_ID = "DUAL-UPLINK"

LOOPBACK = IPv4Network("127.0.0.0/8")
SOFTWARE_LOOPBACK = 24  # IANAifType softwareLoopback
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")
UNSPECIFIED = IPv4Address("0.0.0.0")


def _forwarders(ctx: CheckContext) -> list[dict[str, Any]]:
    gateways = set(ctx.profile.network.gateways)
    test = ctx.observations.forwarding
    rows = [{"address": str(f.address), "mac": f.mac, "registered": f.address in gateways, "how": f.how,
             "egress": str(f.egress) if f.egress else None}
            for f in (test.forwarders if test else [])]
    return sorted(rows, key=lambda r: (int(IPv4Address(r["address"])), r["mac"]))


def _bad_egress(ctx: CheckContext, egress: list[IPv4Address]) -> list[IPv4Address]:
    """Egresses the profile does not account for (see the module docstring)."""
    registered = ctx.profile.network.egress
    if registered:
        return [e for e in egress if e not in registered]
    return egress if len(egress) > len(ctx.profile.network.gateways) else []


def _snmp_row(ctx: CheckContext, device: SnmpDevice) -> dict[str, Any]:
    """One router's WAN interfaces up and default routes, against its registered uplinks."""
    subnets = ctx.profile.network.subnets
    target = next((t for t in ctx.profile.servers.snmp if t.address == device.address), None)
    names = {i.index: i.name or i.descr or f"if{i.index}" for i in device.interfaces}
    wan_up = [names[i.index] for i in device.interfaces
              if i.oper_up and i.type != SOFTWARE_LOOPBACK
              and any(a.ip not in LOOPBACK and not any(a.ip in net for net in subnets) for a in i.addresses)]
    routes: dict[tuple[IPv4Address | None, int | None], None] = {}
    for r in device.routes:
        if r.destination == DEFAULT_ROUTE:
            routes[(None if r.next_hop in (None, UNSPECIFIED) else r.next_hop, r.if_index)] = None
    # One route read from two tables, one without the interface, is still one route.
    known = {hop for hop, index in routes if index is not None}
    defaults = [(hop, index) for hop, index in routes if index is not None or hop not in known]
    return {"address": str(device.address), "ok": device.ok, "error": device.error,
            "error_detail": device.error_detail, "uplinks": target.uplinks if target else 1, "wan_up": wan_up,
            "default_routes": [{"next_hop": str(hop) if hop else None, "if_index": index,
                                "interface": names.get(index) if index is not None else None}
                               for hop, index in defaults]}


def check(ctx: CheckContext) -> Verdict:
    """Compare forwarders, egresses and routers' WAN lines with the registered ones."""
    obs, net = ctx.observations, ctx.profile.network
    test = obs.forwarding
    forwarders = _forwarders(ctx)
    egress = list(dict.fromkeys(IPv4Address(f["egress"]) for f in forwarders if f["egress"]))
    bad_egress = _bad_egress(ctx, egress)
    routers = [_snmp_row(ctx, d) for d in sorted(obs.snmp, key=lambda d: int(d.address)) if d.role == "router"]
    extra = [r for r in routers if r["ok"] and max(len(r["wan_up"]), len(r["default_routes"])) > r["uplinks"]]
    unreadable = [r for r in routers if not r["ok"]]
    rogue = [f for f in forwarders if not f["registered"]]
    forwarded = {f["address"] for f in forwarders}
    failed_on = [name for name, hit in (("forwarder", rogue), ("egress", bad_egress), ("snmp", extra)) if hit]
    evidence = {
        "forwarders": forwarders,
        "egress": [str(e) for e in egress],
        "egress_registered": [str(e) for e in net.egress],
        "gateways": [str(g) for g in net.gateways],
        "gateways_silent": [str(g) for g in net.gateways if str(g) not in forwarded] if test else [],
        "target": str(test.target) if test else None,
        "hosts_tested": test.hosts if test else None,
        "syn_enabled": test.syn_enabled if test else None,
        "follow_hops": test.follow_hops if test else None,
        "snmp": routers,
        "failed_on": failed_on,
        "observations": ["forwarding", "snmp"],
    }
    limit = int(ctx.thresholds["summary_list_max"])
    if failed_on:
        return _failure(failed_on[0], rogue, bad_egress, extra, ctx, evidence)
    unreadable_text = listing([f"{r['address']} ({r['error']})" for r in unreadable], limit)
    if test is None:
        reason = "not_run_and_unreadable" if unreadable else "not_run"
        return Verdict(status=Status.INCONCLUSIVE, reason=reason, evidence=evidence,
                       values={"routers": unreadable_text})
    if unreadable:
        return Verdict(status=Status.INCONCLUSIVE, reason="snmp_unreadable", evidence=evidence,
                       values={"routers": unreadable_text})
    values = {"hosts": test.hosts, "forwarders": len(forwarders), "routers": len(routers)}
    if evidence["gateways_silent"]:
        return Verdict(status=Status.PASS, reason="gateways_silent", evidence=evidence,
                       values={**values, "gateways": listing(evidence["gateways_silent"], limit)})
    return Verdict(status=Status.PASS, reason="registered_only", evidence=evidence, values=values)


def _failure(first: str, rogue: list[dict], bad_egress: list[IPv4Address], extra: list[dict],
             ctx: CheckContext, evidence: dict) -> Verdict:
    """The failure the summary names: the first cause found (all of them are in ``failed_on``)."""
    limit = int(ctx.thresholds["summary_list_max"])
    net = ctx.profile.network
    if first == "forwarder":
        labels = [host_label(f["address"], f["mac"]) + (f" → {f['egress']}" if f["egress"] else "") for f in rogue]
        return Verdict(status=Status.FAIL, reason="unregistered_forwarders", evidence=evidence,
                       values={"count": len(rogue), "forwarders": listing(labels, limit)})
    if first == "egress":
        values = {"count": len(bad_egress), "egress": listing([str(e) for e in bad_egress], limit),
                  "registered": listing([str(e) for e in net.egress], limit), "gateways": len(net.gateways)}
        reason = "unregistered_egress" if net.egress else "more_egress_than_gateways"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    labels = [f"{r['address']} ({len(r['wan_up'])}/{len(r['default_routes'])}/{r['uplinks']}"
              + (f": {', '.join(r['wan_up'])}" if r["wan_up"] else "") + ")" for r in extra]
    return Verdict(status=Status.FAIL, reason="snmp_extra_uplinks", evidence=evidence,
                   values={"count": len(extra), "routers": listing(labels, limit)})
