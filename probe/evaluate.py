"""From observations to findings: run every catalogue entry against one run's observations.

Pure: the same observations, profile and ruleset give the same findings,
which is what ``cafe-probe evaluate`` relies on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from probe.checks import CHECKS, CheckContext
from probe.findings import Finding, Status, Verdict
from probe.observations import Observations
from probe.profile import VenueProfile
from probe.rules import Ruleset

__all__ = ["evaluate", "findings_document", "FINDINGS_SCHEMA", "INTERRUPTED"]

FINDINGS_SCHEMA = "cafe-probe.findings/1"
# The one reason evaluate gives itself, not a check: a pass of an interrupted run (catalogue template).
INTERRUPTED = "interrupted"


def evaluate(obs: Observations, profile: VenueProfile, ruleset: Ruleset) -> list[Finding]:
    """Findings for every catalogue entry, in catalogue order."""
    ruleset.require_modules(set(CHECKS))
    on = obs.run.started_at.date()  # local date: started_at carries the venue's offset
    base = CheckContext(observations=obs, profile=profile)
    findings = []
    for check_id, rule in ruleset.checks.items():
        if rule.kind == "manual":
            verdict = Verdict(status=Status.MANUAL, reason="manual",
                              values={"live_terminals": len(base.terminals)})
        elif rule.pending:
            verdict = Verdict(status=Status.MANUAL, reason="pending")
        else:
            ctx = CheckContext(observations=obs, profile=profile, thresholds=dict(rule.thresholds))
            verdict = CHECKS[check_id](ctx)
            if verdict.status is Status.PASS and not obs.run.complete:
                verdict = _no_pass_when_interrupted(obs, verdict)
        findings.append(ruleset.render(check_id, verdict, on))
    return findings


def _no_pass_when_interrupted(obs: Observations, verdict: Verdict) -> Verdict:
    """An interrupted run claims no pass: what it did not gather may hold the failure. Fails stand (what was
    seen was seen); the pass it would have given stays in the evidence."""
    stage = obs.run.interrupted.stage if obs.run.interrupted is not None else "?"
    evidence = dict(verdict.evidence)
    evidence["before_interruption"] = {"status": verdict.status.value, "reason": verdict.reason}
    return Verdict(status=Status.INCONCLUSIVE, reason=INTERRUPTED, values={"stage": stage}, evidence=evidence)


def findings_document(obs: Observations, findings: list[Finding], ruleset: Ruleset) -> dict[str, Any]:
    """The findings.json content: the findings plus what identifies the run and the rules."""
    counts = Counter(f.status.value for f in findings)
    return {
        "schema_version": FINDINGS_SCHEMA,
        "run_id": obs.run.run_id,
        "venue_id": obs.run.venue_id,
        "started_at": obs.run.started_at.isoformat(),
        "finished_at": obs.run.finished_at.isoformat(),
        "complete": obs.run.complete,
        "ruleset": {"version": ruleset.version, "sha256": ruleset.sha256},
        "counts": {s.value: counts.get(s.value, 0) for s in Status},
        "findings": [f.model_dump(mode="json") for f in findings],
    }
