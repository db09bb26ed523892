"""A signed-off case as the inspector device shows it, for the case file tests and bench/casefile.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent_api.cases import CaseView, ManualItemView, OfficerRef, ResultTypeView, SignoffView, manual_checks
from probe.keys import key_id
from tests.reportkit import make_payload, make_probe_key

__all__ = ["LI", "TZ", "ZHANG", "make_case"]

TZ = ZoneInfo("Asia/Shanghai")
ZHANG = OfficerRef(username="zhangwei", display_name="张伟", badge="350100123")
LI = OfficerRef(username="lina", display_name="李娜", badge="350100456")


def make_case(tmp: Path, *, many_hosts: int = 0, signed: bool = True) -> CaseView:
    """A case of reportkit's café: every manual item checked, a result type, signed off by two officers.

    A fresh probe key is written to ``tmp``. ``many_hosts``: that many
    unidentified hosts in the IP-MAP evidence (a crowded café's long list).
    ``signed=False``: no signatures yet, the case still open.
    """
    priv, _ = make_probe_key(tmp)
    payload = make_payload(priv)
    if many_hosts:
        findings = []
        for f in payload.findings:
            if f.check_id == "IP-MAP":
                hosts = [{"address": f"198.18.10.{i}", "mac": f"02:00:00:00:02:{i:02x}", "vendor": "<unknown>"}
                         for i in range(many_hosts)]
                f = f.model_copy(update={"evidence": {**f.evidence, "unidentified": hosts}})
            findings.append(f)
        payload = payload.model_copy(update={"findings": findings})
    at = datetime(2026, 11, 24, 10, 30, tzinfo=TZ)
    items = [ManualItemView(item_id=r.id, title_zh=r.title_zh, title_en=r.title_en, probe_note_zh=None,
                            probe_note_en=None, status="pass", note="核对无误", officer=ZHANG, updated_at=at)
             for r in manual_checks()]
    signoffs = [SignoffView(officer=o, signed_at=at + timedelta(minutes=n), report_sha256="a" * 64)
                for n, o in enumerate((ZHANG, LI))] if signed else []
    return CaseView(
        record=7, report_id=payload.report_id, sha256="5" * 64, key_id=key_id(priv.public_key()),
        probe_id="probe-test", probe_label="马尾-1号", probe_revoked=False, received_at=at, payload=payload,
        manual_items=items, result_type=ResultTypeView(code="corrected", zh="发现问题已责令改正",
                                                       en="Problem found and corrected on order"),
        result_note="IP 地址当场改正", suggested_result_types=[], signoffs=signoffs, locked=signed,
        locked_at=at if signed else None, signoff_blockers=[], audit=[])
