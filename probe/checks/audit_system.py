"""AUDIT-SYSTEM 安全审计系统正常运行 — every registered audit server answers.

Why: seed 000 二(四)4② 网吧安全审计系统、视频系统是否正常运行. The security
technical measures must run and must not be stopped (条例 Art. 19, 24(五);
公安部令第82号 venue security management system), and the police check the
logging measures (公安部令第151号 Art. 10(三), from 2026-10-01 第176号).

How: for each of the profile's ``servers.audit`` entries, the service scan
must hold a match of role ``audit`` at that address, from a signature that
names the same product or none (any confidence: an answering service port is
what "up" means here; the confidence is in the evidence). Audit matches at
other addresses, or naming another product, are listed as ``unregistered``
and noted, not failed.

Fails when the profile registers no audit server (seed 000 asks whether the
audit system runs: a venue without one has none running), or when a
registered one does not answer. Inconclusive when the scan did not run, or
when a registered server is silent and no audit signature was in effect at
all (nothing answered as audit anywhere and the profile stages none): the
probe could not have recognised it.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from probe.checks.context import CheckContext, host_label, listing, matched_ids, role_matches, staged_ids
from probe.findings import Status, Verdict
from probe.observations import SignatureMatch
from probe.profile import ServiceRef

CHECK_ID = "AUDIT-SYSTEM"


def _fits(m: SignatureMatch, ref: ServiceRef) -> bool:
    """A match answers for a registered server: same address, and the same product when the signature names one."""
    return m.address == ref.address and (m.product is None or m.product.casefold() == ref.product.casefold())


def _registered_row(ref: ServiceRef, matches: list[SignatureMatch], swept: dict[IPv4Address, str]) -> dict[str, Any]:
    mine = [m for m in matches if _fits(m, ref)]
    return {"address": str(ref.address), "product": ref.product, "up": bool(mine),
            "live": ref.address in swept, "mac": mine[0].mac if mine else swept.get(ref.address),
            "signatures": matched_ids(mine), "ports": sorted({m.port for m in mine}),
            "confidence": max((m.confidence for m in mine), default=None)}


def _unregistered(matches: list[SignatureMatch], refs: list[ServiceRef]) -> list[dict[str, Any]]:
    """Audit matches that answer for no registered server, one row per (address, MAC, product)."""
    rows: dict[tuple[IPv4Address, str, str | None], dict[str, Any]] = {}
    for m in matches:
        if not any(_fits(m, ref) for ref in refs):
            row = rows.setdefault((m.address, m.mac, m.product), {"address": str(m.address), "mac": m.mac,
                                                                  "product": m.product, "signatures": []})
            row["signatures"] = sorted({*row["signatures"], m.signature})
    return list(rows.values())


def _label(row: dict[str, Any]) -> str:
    return f"{host_label(row['address'], row['mac'])} {row['product'] or '[' + ', '.join(row['signatures']) + ']'}"


def check(ctx: CheckContext) -> Verdict:
    """Check that each registered audit server's service answers."""
    scan, refs = ctx.observations.services, ctx.profile.servers.audit
    limit = int(ctx.thresholds["summary_list_max"])
    matches = role_matches(ctx, ["audit"])
    swept = {h.address: h.mac for h in ctx.observations.arp.hosts}
    servers = [_registered_row(ref, matches, swept) for ref in refs]
    if scan is None:
        servers = [{**r, "up": None} for r in servers]  # not asked, so neither up nor down
    unregistered = _unregistered(matches, refs)
    evidence = {
        "servers": servers,
        "registered": [{"address": str(r.address), "product": r.product} for r in refs],
        "unregistered": unregistered,
        "audit_signatures": matched_ids(matches),
        "audit_signatures_staged": staged_ids(ctx, "audit"),
        "signatures_sha256": scan.signatures_sha256 if scan else None,
        "observations": ["services.matches", "arp.hosts"],
    }
    values = {"total": len(refs), "unregistered_count": len(unregistered),
              "unregistered": listing([_label(r) for r in unregistered], limit),
              "servers": listing([f"{r['address']} {r['product']}" for r in servers], limit)}
    if not refs:
        reason = "none_registered_seen" if unregistered else "none_registered"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if scan is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence, values=values)
    down = [r for r in servers if not r["up"]]
    values["down"] = listing([f"{r['address']} {r['product']}" for r in down], limit)
    if down and not matches and not evidence["audit_signatures_staged"]:
        return Verdict(status=Status.INCONCLUSIVE, reason="no_signature", evidence=evidence, values=values)
    if down:
        values.update(count=len(down), offline=sum(not r["live"] for r in down))
        return Verdict(status=Status.FAIL, reason="down", evidence=evidence, values=values)
    reason = "all_up_unregistered" if unregistered else "all_up"
    return Verdict(status=Status.PASS, reason=reason, evidence=evidence, values=values)
