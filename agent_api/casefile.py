"""The case file 现场检查记录 as a PDF, and the Jinja2 set-up it shares with the web UI.

The PDF is rendered by WeasyPrint from ``templates/casefile.html`` (A4,
"第 X 页 共 Y 页" page numbers, Debian's Noto CJK fonts). The same Jinja2
environment, with the filters that format times, statuses and evidence,
serves the officer web UI (agent_api.web), so both show a case alike.

Everything from a report came over the network: the environment
autoescapes, and evidence is turned into plain text nodes before any
template sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent_api.cases import ruleset
from probe.findings import Status
from probe.observations import ClockCheck

if TYPE_CHECKING:
    from agent_api.cases import CaseView

__all__ = ["TEMPLATES_DIR", "STATUS_LABELS", "VERIFY_COMMAND", "EvidenceNode", "evidence_tree", "plain",
           "format_time", "status_class", "status_zh", "status_en", "citation_text", "result_label",
           "RunWarning", "run_warnings", "payload_warnings", "jinja_env", "case_context", "render_casefile_html", "render_casefile_pdf"]

TEMPLATES_DIR = Path(__file__).parent / "templates"

# Status words, Chinese first; the CSS class is "status-<value>".
STATUS_LABELS: dict[str | None, tuple[str, str]] = {
    "pass": ("符合", "pass"),
    "fail": ("不符合", "fail"),
    "inconclusive": ("无法确定", "inconclusive"),
    "not_applicable": ("不适用", "not applicable"),
    "manual": ("人工核查", "manual"),
    None: ("未填写", "not filled"),
}

VERIFY_COMMAND = "cafe-probe verify report.dsse.json --pubkey probe.pub"

# Chinese labels of the evidence keys DESIGN.md section 5 fixes, so that an
# officer reads "不符终端" rather than "mismatches"; the key itself is shown
# beside it, since exports and other readers use the key.
EVIDENCE_LABELS: dict[str, str] = {
    "mismatches": "不符终端", "checked": "已核对台数", "live_terminals": "在线终端数",
    "unidentified": "未识别编号的主机", "duplicate_numbers": "重复编号", "sample": "随机抽查终端",
    "sample_seed": "抽样种子", "observations": "依据的观测数据", "seen": "发现台数",
    "licensed": "核定台数", "identified": "识别出的终端数", "servers": "服务器",
    "forwarders": "转发主机", "egress": "出口", "hosts": "主机", "billing_servers": "计费服务器",
    "missing": "缺失", "ratio": "比例", "cameras": "摄像机", "registered": "已登记",
    "oldest": "最早记录", "newest": "最新记录", "gaps": "缺失区间", "files": "文件数",
    "listing_sha256": "目录清单 SHA-256", "number": "编号", "address": "地址",
    "expected_address": "应有地址", "mac": "MAC", "name": "名称", "number_from": "编号来源",
    "vendor": "厂商", "roles": "角色", "product": "产品", "up": "在线", "how": "发现方式",
    "server_id": "服务器标识", "router": "路由器",
}

# Large evidence lists stay readable: this many rows, then "N more" (the JSON
# export and the signed envelope keep them all).
WEB_MAX_ROWS = 200
PDF_MAX_ROWS = 25
_MAX_DEPTH = 6

@dataclass
class EvidenceNode:
    """One piece of evidence ready for a template.

    kind: "text" (``text``), "map" (``items`` of (key, label, node)), "list"
    (``children``), "table" (``columns`` of (key, label), ``rows`` of nodes).
    ``more`` counts rows or items left out.
    """

    kind: str
    text: str = ""
    items: list[tuple[str, str, EvidenceNode]] = field(default_factory=list)
    children: list[EvidenceNode] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[list[EvidenceNode]] = field(default_factory=list)
    more: int = 0


def _scalar_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "是 / yes" if value else "否 / no"
    return str(value)


def plain(value: Any) -> str:
    """One value as a line of text: 是/否 for booleans, — for nothing, compact JSON for structures."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _scalar_text(value)


def evidence_tree(value: Any, max_rows: int = WEB_MAX_ROWS, depth: int = 0) -> EvidenceNode:
    """Turn a finding's evidence (JSON-like data) into nodes the templates draw.

    Lists of mappings become tables (columns in order of first appearance),
    lists of scalars one comma-separated line, mappings key/value lists.
    Values stay text: the templates escape them.
    """
    if depth >= _MAX_DEPTH:
        return EvidenceNode(kind="text", text=_scalar_text(value) if not isinstance(value, (dict, list)) else "…")
    if isinstance(value, dict):
        return EvidenceNode(kind="map", items=[
            (str(k), EVIDENCE_LABELS.get(str(k), ""), evidence_tree(v, max_rows, depth + 1))
            for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        shown, more = list(value[:max_rows]), max(0, len(value) - max_rows)
        if not value:
            return EvidenceNode(kind="text", text="（无 / none）")
        if all(isinstance(v, dict) for v in shown):
            keys: list[str] = []
            for row in shown:
                keys.extend(str(k) for k in row if str(k) not in keys)
            return EvidenceNode(kind="table", more=more,
                                columns=[(k, EVIDENCE_LABELS.get(k, "")) for k in keys],
                                rows=[[evidence_tree(_lookup(row, k), max_rows, depth + 1) for k in keys]
                                      for row in shown])
        if not any(isinstance(v, (dict, list, tuple)) for v in shown):
            text = ", ".join(_scalar_text(v) for v in shown)
            return EvidenceNode(kind="text", text=text + (f" …（另有 {more} 项 / {more} more）" if more else ""))
        return EvidenceNode(kind="list", more=more,
                            children=[evidence_tree(v, max_rows, depth + 1) for v in shown])
    return EvidenceNode(kind="text", text=_scalar_text(value))


def _lookup(row: dict, key: str) -> Any:
    # Keys were stringified for the column list; JSON keys are strings already,
    # but a hand-built dict might use ints.
    if key in row:
        return row[key]
    return next((v for k, v in row.items() if str(k) == key), None)


def format_time(value: datetime | str | None) -> str:
    """``2026-11-24 10:00:00 +08:00``: local time of the value with its UTC offset, never converted."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S") + "（无时区 / no offset）"
    offset = value.strftime("%z")
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')} {offset[:3]}:{offset[3:]}"


def _status_value(status: Any) -> str | None:
    return None if status is None else str(getattr(status, "value", status))


def status_class(status: Any) -> str:
    """CSS class of a status (``status-none`` when nothing was recorded)."""
    return f"status-{_status_value(status) or 'none'}"


def status_zh(status: Any) -> str:
    """Chinese word for a status."""
    return STATUS_LABELS.get(_status_value(status), (str(status), ""))[0]


def status_en(status: Any) -> str:
    """English word for a status."""
    return STATUS_LABELS.get(_status_value(status), ("", str(status)))[1]


def citation_text(citation: Any) -> str:
    """《law》第N条, with the verification mark when not verified (LEGAL.md: P or M)."""
    text = citation.law + (citation.article or "")
    if citation.verified == "P":
        text += "（条文序号待核实 / article number unconfirmed）"
    elif citation.verified == "M":
        text += "（未经核实 / unverified）"
    return text


def result_label(code: str | None) -> str:
    """"中文 / English" wording of a result type code (the code itself when the ruleset lacks it)."""
    known = ruleset().result_types.get(code or "")
    return f"{known.zh} / {known.en}" if known else (code or "—")


@dataclass(frozen=True)
class RunWarning:
    """Why a report must not be read as a clean run: ``code`` "incomplete" or "clock", the label
    (``zh`` / ``en``) and a one-line ``detail`` (the probe's reason, the clock's offset)."""

    code: str
    zh: str
    en: str
    detail: str


def _seconds(value: float) -> str:
    return f"{value:+.1f}"


def run_warnings(complete: bool, incomplete_reason: str = "", clock: ClockCheck | None = None) -> list[RunWarning]:
    """The warnings a report's own fields call for: an interrupted run, a clock the self-test failed.

    Both are in the signed payload; the officers must see them before any
    finding, since an interrupted run gathered less than a clean one and a
    wrong clock makes every time in the report doubtful.
    """
    warnings = []
    if not complete:
        warnings.append(RunWarning("incomplete", "未完成（中断）", "incomplete (interrupted)",
                                   incomplete_reason or "原因未记录 / no reason recorded"))
    if clock is not None and not clock.ok:
        parts = []
        if clock.device_offset is not None:
            parts.append(f"与检查设备相差 {_seconds(clock.device_offset)} 秒（容差 {clock.tolerance:g} 秒） / "
                         f"{_seconds(clock.device_offset)} s off the inspector device (tolerance {clock.tolerance:g} s)")
        else:
            parts.append("未能与检查设备对时 / the inspector device's clock could not be read")
        if clock.reason:  # the self-test's own words: the kernel's state and why it failed
            parts.append(clock.reason)
        warnings.append(RunWarning("clock", "时钟异常", "clock error", "；".join(parts)))
    return warnings


def payload_warnings(payload: Any) -> list[RunWarning]:
    """:func:`run_warnings` of a report payload (the templates' filter)."""
    return run_warnings(payload.complete, payload.incomplete_reason, payload.clock)


@lru_cache(maxsize=1)
def jinja_env() -> Environment:
    """The one Jinja2 environment of the agent's HTML: autoescaping, with the case filters."""
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=format_time, status_class=status_class, status_zh=status_zh,
                       status_en=status_en, citation=citation_text, plain=plain, evidence_tree=evidence_tree,
                       run_warnings=payload_warnings)
    env.globals.update(result_label=result_label, VERIFY_COMMAND=VERIFY_COMMAND, PDF_MAX_ROWS=PDF_MAX_ROWS,
                       WEB_MAX_ROWS=WEB_MAX_ROWS)
    return env


def case_context(case: CaseView) -> dict[str, Any]:
    """What the case templates need beyond the case itself.

    ``measured``: the probe's findings with a verdict; ``unmeasured``: automatic
    checks this probe version left to the officers (status manual, not an
    officers' item); ``basis``: the provisions behind the inspection itself on
    its date.
    """
    manual_ids = {m.item_id for m in case.manual_items}
    automatic = [f for f in case.payload.findings if f.check_id not in manual_ids]
    return {
        "case": case,
        "p": case.payload,
        "measured": [f for f in automatic if f.status is not Status.MANUAL],
        "unmeasured": [f for f in automatic if f.status is Status.MANUAL],
        "basis": ruleset().general_citations(case.payload.started_at.date()),
    }


def render_casefile_html(case: CaseView) -> str:
    """The case file as HTML (what WeasyPrint lays out)."""
    return jinja_env().get_template("casefile.html").render(**case_context(case))


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> dict:
    # The case file is self-contained; a reference to anything (which escaped
    # report text cannot create, but a template change might) must not reach
    # out from an offline device.
    raise ValueError(f"case file fetches nothing: {url}")


def render_casefile_pdf(case: CaseView) -> bytes:
    """The case file 现场检查记录 of one report as PDF bytes (A4, Chinese)."""
    # Imported here: WeasyPrint loads Pango and fonts, which the web pages and
    # the API never need unless a PDF is asked for.
    from weasyprint import HTML

    html = render_casefile_html(case)
    return HTML(string=html, url_fetcher=_no_fetch).write_pdf()
