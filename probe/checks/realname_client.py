"""REALNAME-CLIENT 实名客户端（控制台红色超过5%） — the real-name client runs on the live terminals.

Why: seed 000 二(四)4: 查看控制台在线顾客列表是否为正常的黑色(如顾客列表显示红色数量高于
百分之五表示实名客户端有问题). The 5% is seed 000's own figure (no public national
source, LEGAL.md) and lives in rules/ as ``max_missing_share``. Basis: ID
registration (条例 Art. 23), security measures not stopped (Art. 24(五)).

How: a live terminal (``CheckContext.terminals``) has the client when the
service scan holds a match of role ``realname_client`` at its address (any
confidence: presence is what is asked). The share missing is counted over
the live terminals. A terminal whose firewall drops the probe's connection
counts as missing: the probe, like the console, cannot reach its client.

Fails when the share missing is above the threshold. Inconclusive when the
scan did not run, when there is no live terminal, and when no terminal
answered at all: a café whose every client is down is far less likely than a
signature or scan problem (no real-name signature in effect is said
separately), so 100% missing is never reported as a failure.
"""

from __future__ import annotations

from probe.checks.context import CheckContext, matched_ids, role_matches, staged_ids
from probe.findings import Status, Verdict

CHECK_ID = "REALNAME-CLIENT"


def check(ctx: CheckContext) -> Verdict:
    """Share of live terminals on which the real-name client did not answer, against the threshold."""
    scan = ctx.observations.services
    max_share = float(ctx.thresholds["max_missing_share"])
    matches = role_matches(ctx, ["realname_client"])
    answered = {m.address for m in matches}
    terminals = sorted(ctx.terminals, key=lambda h: (int(h.address), h.mac))
    missing = [h for h in terminals if h.address not in answered] if scan else []
    ratio = len(missing) / len(terminals) if scan and terminals else None
    evidence = {
        "live_terminals": len(terminals),
        "missing": [str(h.address) for h in missing],
        "missing_hosts": [h.brief() for h in missing],
        "ratio": round(ratio, 4) if ratio is not None else None,
        "max_missing_share": max_share,
        "realname_signatures": matched_ids(matches),
        "realname_signatures_staged": staged_ids(ctx, "realname_client"),
        "signatures_sha256": scan.signatures_sha256 if scan else None,
        "observations": ["services.matches", "arp.hosts"],
    }
    if scan is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence)
    if not terminals:
        return Verdict(status=Status.INCONCLUSIVE, reason="no_terminals", evidence=evidence)
    values = {"live": len(terminals), "count": len(missing), "answered": len(terminals) - len(missing),
              "ratio_pct": f"{100 * ratio:.1f}", "max_pct": f"{100 * max_share:g}"}
    if len(missing) == len(terminals):
        reason = "none_answered" if matches or evidence["realname_signatures_staged"] else "no_signature"
        return Verdict(status=Status.INCONCLUSIVE, reason=reason, evidence=evidence, values=values)
    if ratio > max_share:
        return Verdict(status=Status.FAIL, reason="over_threshold", evidence=evidence, values=values)
    reason = "within_threshold" if missing else "all_present"
    return Verdict(status=Status.PASS, reason=reason, evidence=evidence, values=values)
