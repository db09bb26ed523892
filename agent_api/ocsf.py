"""OCSF 1.x Compliance Finding (class 2003) export: one event per finding of a case.

Mapping (https://schema.ocsf.io, classes/compliance_finding):
- class_uid 2003, category_uid 2 (Findings), activity_id 1 (Create), type_uid 200301;
- ``compliance``: ``control`` = our check id, ``standards`` = the legal basis
  (law and article, as in force on the inspection date; the ruleset when a check
  cites none), ``status_id``/``status`` from our status (below);
- ``finding_info``: uid ``<report id>:<check id>``, title and desc "中文 / English";
- ``metadata.product`` = cafe-probe and the probe's tool version;
- ``time`` = when the probe finished the run (epoch milliseconds), start/end times of the run;
- ``resources``: the venue; ``unmapped``: the evidence and what identifies the signed report.

Status mapping: pass → Pass (1); fail → Fail (3); inconclusive → Warning (2), which
OCSF defines as "did not yield a result due to missing information"; not_applicable →
Other (99, "Not applicable"); manual → the officers' recorded result for that
item (pass/fail/not applicable as above), Unknown (0) while none is recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent_api.cases import CaseView
from probe.findings import Citation, Finding, Status

__all__ = ["OCSF_VERSION", "CLASS_UID", "CATEGORY_UID", "ACTIVITY_CREATE", "TYPE_UID", "compliance_status",
           "finding_event", "case_events"]

OCSF_VERSION = "1.3.0"
CLASS_UID = 2003
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_CREATE

_COMPLIANCE = {"pass": (1, "Pass"), "fail": (3, "Fail"), "inconclusive": (2, "Warning"),
               "not_applicable": (99, "Not applicable")}
_UNKNOWN = (0, "Unknown")
# A failed check is a breach of a rule the venue is licensed under; an open
# question (inconclusive, unrecorded) needs attention but is not a breach.
_SEVERITY = {1: (1, "Informational"), 99: (1, "Informational"), 2: (2, "Low"), 0: (2, "Low"), 3: (4, "High")}


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _standard(c: Citation) -> str:
    return f"{c.law} {c.article}" if c.article else c.law


def compliance_status(finding: Finding, case: CaseView) -> tuple[int, str]:
    """OCSF compliance (status_id, status) of a finding; manual findings take the officers' record."""
    status = finding.status.value
    if finding.status is Status.MANUAL:
        item = next((m for m in case.manual_items if m.item_id == finding.check_id), None)
        status = item.status if item and item.status else None
    return _COMPLIANCE.get(status, _UNKNOWN) if status else _UNKNOWN


def finding_event(case: CaseView, finding: Finding) -> dict[str, Any]:
    """One OCSF Compliance Finding event for one finding of the case."""
    p = case.payload
    status_id, status = compliance_status(finding, case)
    severity_id, severity = _SEVERITY[status_id]
    item = next((m for m in case.manual_items if m.item_id == finding.check_id), None)
    standards = [_standard(c) for c in finding.legal_basis] or [f"cafe-probe ruleset {p.ruleset.version}"]
    compliance: dict[str, Any] = {"control": finding.check_id, "standards": standards,
                                  "status_id": status_id, "status": status,
                                  "status_detail": f"{finding.summary_zh} / {finding.summary_en}"}
    if item and item.note:
        compliance["status_detail"] += f" — {item.note}"
    return {
        "class_uid": CLASS_UID, "class_name": "Compliance Finding",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE, "activity_name": "Create",
        "type_uid": TYPE_UID, "type_name": "Compliance Finding: Create",
        "severity_id": severity_id, "severity": severity,
        # Finding lifecycle: under review until two officers have signed the case.
        "status_id": 99 if case.locked else 1, "status": "Signed off" if case.locked else "New",
        "time": _ms(p.ended_at), "time_dt": p.ended_at.isoformat(),
        "start_time": _ms(p.started_at), "end_time": _ms(p.ended_at),
        "timezone_offset": int(p.ended_at.utcoffset().total_seconds() // 60),
        "message": finding.summary_zh,
        "metadata": {"version": OCSF_VERSION, "uid": f"{case.report_id}:{finding.check_id}",
                     "product": {"name": "cafe-probe", "vendor_name": "cafe-probe project",
                                 "version": p.probe.tool_version}},
        "finding_info": {"uid": f"{case.report_id}:{finding.check_id}",
                         "title": f"{finding.title_zh} / {finding.title_en}",
                         "desc": f"{finding.summary_zh} / {finding.summary_en}",
                         "types": ["Compliance"], "created_time": _ms(p.ended_at)},
        "compliance": compliance,
        "resources": [{"type": "venue", "uid": p.venue.id, "name": p.venue.name}],
        "unmapped": {"report_id": case.report_id, "report_sha256": case.sha256, "probe_key_id": case.key_id,
                     "agent_record": case.record, "suggested_result_type": finding.result_type,
                     "evidence": finding.evidence},
    }


def case_events(case: CaseView) -> list[dict[str, Any]]:
    """The case as a JSON array of Compliance Finding events, one per finding, in report order."""
    return [finding_event(case, f) for f in case.payload.findings]
