"""SERVER-COUNT 服务器台数与登记一致 — no more servers on the LAN than the licence registers.

Why: seed 000 二(四)1④ 核定场所前端电脑台数、服务器台数……是否与相关证照登记信息一致;
条例 Art. 13: a change in the number of computers needs approval or filing.

How: every live host with a service-signature match of a server role
(``probe.signatures.SERVER_ROLES``: billing, audit, diskless, database, nvr)
is a server, one per (address, MAC), compared with ``venue.licensed_servers``.

A match counts only with a confidence of at least ``min_confidence``
(rules/): a signature without a ``match`` pattern (an open port alone) must
carry a low confidence (probe/signatures.py), and an open port is no proof
that a customer PC is a server. Hosts matched only below the threshold are
listed apart (``uncertain``): they never fail the check, but when they alone
would push the count over the licence the result is inconclusive.

Fails when more servers than licensed (also when the profile registers none).
Fewer, or none at all, is noted, not failed (a server may be off). Inconclusive
when the service scan did not run.

The helpers below (matches of a role, the venue's staged signatures in
effect) are shared by the other service checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from probe.checks.context import CheckContext, host_label, listing, role_matches
from probe.findings import Status, Verdict
from probe.observations import SignatureMatch
from probe.signatures import SERVER_ROLES

CHECK_ID = "SERVER-COUNT"


@dataclass
class _Host:
    address: IPv4Address
    mac: str
    roles: set[str] = field(default_factory=set)
    signatures: set[str] = field(default_factory=set)
    confidence: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"address": str(self.address), "mac": self.mac, "roles": sorted(self.roles),
                "signatures": sorted(self.signatures), "confidence": self.confidence}

    def label(self) -> str:
        return f"{host_label(self.address, self.mac)} [{', '.join(sorted(self.roles))}]"


def _hosts(matches: list[SignatureMatch], keep) -> list[_Host]:
    """Matches for which ``keep`` holds, merged per (address, MAC), in address order."""
    hosts: dict[tuple[IPv4Address, str], _Host] = {}
    for m in matches:
        if keep(m):
            h = hosts.setdefault((m.address, m.mac), _Host(m.address, m.mac))
            h.roles.add(m.role)
            h.signatures.add(m.signature)
            h.confidence = max(h.confidence, m.confidence)
    return list(hosts.values())


def check(ctx: CheckContext) -> Verdict:
    """Count the hosts answering as servers and compare with the licence."""
    scan = ctx.observations.services
    min_confidence = float(ctx.thresholds["min_confidence"])
    limit = int(ctx.thresholds["summary_list_max"])
    matches = role_matches(ctx, SERVER_ROLES)
    servers = _hosts(matches, lambda m: m.confidence >= min_confidence)
    counted = {(h.address, h.mac) for h in servers}
    uncertain = [h for h in _hosts(matches, lambda m: m.confidence < min_confidence)
                 if (h.address, h.mac) not in counted]
    licensed = ctx.profile.venue.licensed_servers
    evidence = {
        "servers": [h.row() for h in servers],
        "licensed": licensed,
        "uncertain": [h.row() for h in uncertain],
        "min_confidence": min_confidence,
        "signatures_sha256": scan.signatures_sha256 if scan else None,
        "observations": ["services.matches"],
    }
    if scan is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence)
    values = {"seen": len(servers), "licensed": licensed, "uncertain": len(uncertain),
              "servers": listing([h.label() for h in servers], limit)}
    if len(servers) > licensed:
        reason = "over_licence" if licensed else "none_licensed"
        return Verdict(status=Status.FAIL, reason=reason, evidence=evidence, values=values)
    if len(servers) + len(uncertain) > licensed:
        return Verdict(status=Status.INCONCLUSIVE, reason="unclear_over", evidence=evidence,
                       values={**values, "hosts": listing([h.label() for h in uncertain], limit),
                               "min_confidence": min_confidence})
    if not servers:
        return Verdict(status=Status.PASS, reason="none_seen", evidence=evidence, values=values)
    reason = "below_licence" if len(servers) < licensed else "within_licence"
    return Verdict(status=Status.PASS, reason=reason, evidence=evidence, values=values)
