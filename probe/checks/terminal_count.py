"""TERMINAL-COUNT 前端电脑台数与登记一致 — no more terminals than the licence allows.

Why: seed 000 四(1)④ 核定场所前端电脑台数…是否与相关证照登记信息一致;
条例 Art. 13: a change in the number of computers needs approval.

How: distinct MACs of live hosts that are not registered infrastructure.
Fails only when the terminals identified by name or MAC table alone exceed
the licence; when only the unidentified hosts push the count over, the
check cannot tell terminals from phones or printers and says so. Fewer
terminals than licensed is noted, not failed.
"""

from __future__ import annotations

from probe.checks.context import CheckContext
from probe.findings import Status, Verdict

CHECK_ID = "TERMINAL-COUNT"


def check(ctx: CheckContext) -> Verdict:
    """Compare the terminals seen with the licensed number."""
    seen = len({h.mac for h in ctx.terminals})
    identified = len({h.mac for h in ctx.terminals if h.number is not None})
    licensed = ctx.profile.venue.licensed_terminals
    values = {"seen": seen, "identified": identified, "licensed": licensed}
    evidence = {**values, "observations": ["arp.hosts"]}
    if seen == 0:
        return Verdict(status=Status.INCONCLUSIVE, reason="no_terminals", evidence=evidence, values=values)
    if identified > licensed:
        return Verdict(status=Status.FAIL, reason="over_licence", evidence=evidence, values=values)
    if seen > licensed:
        return Verdict(status=Status.INCONCLUSIVE, reason="unclear_over", evidence=evidence, values=values)
    reason = "below_licence" if seen < licensed else "within_licence"
    return Verdict(status=Status.PASS, reason=reason, evidence=evidence, values=values)
