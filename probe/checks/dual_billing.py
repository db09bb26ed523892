"""DUAL-BILLING 双计费系统、二套计费软件 — one billing server, the registered one.

Why: seed 000 二(四)4① 是否存在使用双计费系统、双线路情况. A second billing
system sells time outside the real-name registration: ID registration
(条例 Art. 23) and the management and security measures (Art. 19, 24(五))
are then bypassed.

How: every service-signature match of role ``billing`` on the live hosts,
one entry per (address, product) — a match whose signature names no product
joins the named product seen at the same address. An entry is registered
when (address, product) is one of the profile's ``servers.billing``
(product keys compared case-insensitively); one without a product is
registered when its address is. Entries whose best match is below
``min_confidence`` (rules/, as SERVER-COUNT: an open port alone proves
little) are listed apart as ``uncertain`` and never fail the check.

Fails when more than one billing server is seen, or the one seen is not
registered. Passes when exactly the one registered server is seen.
Inconclusive when the scan did not run, when nothing answered as a billing
server (no billing signature in effect; or the registered server unseen,
which may be a signature problem; or none registered either), or when only
weak matches stand between a pass and a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from probe.checks.context import CheckContext, host_label, listing, matched_ids, role_matches, staged_ids
from probe.findings import Status, Verdict
from probe.observations import SignatureMatch

CHECK_ID = "DUAL-BILLING"


@dataclass
class _Billing:
    address: IPv4Address
    mac: str
    product: str | None
    signatures: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    confidence: float = 0.0
    registered: bool = False

    def add(self, m: SignatureMatch) -> None:
        self.signatures.add(m.signature)
        self.ports.add(m.port)
        self.confidence = max(self.confidence, m.confidence)

    def row(self) -> dict[str, Any]:
        return {"address": str(self.address), "mac": self.mac, "product": self.product,
                "registered": self.registered, "signatures": sorted(self.signatures),
                "ports": sorted(self.ports), "confidence": self.confidence}

    def label(self) -> str:
        what = self.product or f"[{', '.join(sorted(self.signatures))}]"
        return f"{host_label(self.address, self.mac)} {what}"


def _entries(ctx: CheckContext) -> list[_Billing]:
    """Billing matches merged per (address, product), registration marked, in address order."""
    matches = role_matches(ctx, ["billing"])
    named = {(m.address, m.product) for m in matches if m.product}
    entries: dict[tuple[IPv4Address, str | None], _Billing] = {}
    for m in sorted(matches, key=lambda m: m.product is None):  # named products first
        product = m.product or next((p for a, p in sorted(named) if a == m.address), None)
        entries.setdefault((m.address, product), _Billing(m.address, m.mac, product)).add(m)
    billing = ctx.profile.servers.billing
    pairs = {(s.address, s.product.casefold()) for s in billing}
    addresses = {s.address for s in billing}
    for e in entries.values():
        e.registered = ((e.address, e.product.casefold()) in pairs) if e.product else e.address in addresses
    return sorted(entries.values(), key=lambda e: (int(e.address), e.product or ""))


def check(ctx: CheckContext) -> Verdict:
    """Compare the billing servers answering on the LAN with the registered one."""
    scan = ctx.observations.services
    min_confidence = float(ctx.thresholds["min_confidence"])
    limit = int(ctx.thresholds["summary_list_max"])
    entries = _entries(ctx)
    sure = [e for e in entries if e.confidence >= min_confidence]
    weak = [e for e in entries if e.confidence < min_confidence]
    registered = [f"{s.address} {s.product}" for s in ctx.profile.servers.billing]
    evidence = {
        "billing_servers": [e.row() for e in sure],
        "uncertain": [e.row() for e in weak],
        "registered": [{"address": str(s.address), "product": s.product} for s in ctx.profile.servers.billing],
        "billing_signatures": matched_ids(role_matches(ctx, ["billing"])),
        "billing_signatures_staged": staged_ids(ctx, "billing"),
        "min_confidence": min_confidence,
        "signatures_sha256": scan.signatures_sha256 if scan else None,
        "observations": ["services.matches", "services.signatures"],
    }
    if scan is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence)
    if not entries:
        if not evidence["billing_signatures_staged"]:
            return Verdict(status=Status.INCONCLUSIVE, reason="no_signature", evidence=evidence)
        reason = "registered_not_seen" if registered else "none_registered"
        return Verdict(status=Status.INCONCLUSIVE, reason=reason, evidence=evidence,
                       values={"registered": listing(registered, limit)})
    unregistered = [e for e in sure if not e.registered]
    values = {"count": len(sure), "servers": listing([e.label() for e in sure], limit),
              "unregistered_count": len(unregistered),
              "unregistered": listing([e.label() for e in unregistered], limit),
              "registered": listing(registered, limit), "uncertain_count": len(weak),
              "uncertain": listing([e.label() for e in weak], limit), "min_confidence": min_confidence}
    if len(sure) > 1:
        reason = "second_unregistered" if unregistered else "several_registered"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if unregistered:
        reason = "not_registered" if registered else "seen_none_registered"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if weak:
        reason = "uncertain_extra" if sure else "uncertain_only"
        return Verdict(status=Status.INCONCLUSIVE, reason=reason, evidence=evidence, values=values)
    return Verdict(status=Status.PASS, reason="registered_only", evidence=evidence, values=values)
