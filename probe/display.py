"""Terminal output: the findings table, Chinese first with English beneath."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from probe.findings import Finding, Status

__all__ = ["findings_table", "STATUS_LABEL"]

STATUS_LABEL = {
    Status.PASS: ("[green]通过[/]", "pass"),
    Status.FAIL: ("[bold red]不合格[/]", "fail"),
    Status.INCONCLUSIVE: ("[yellow]无法判定[/]", "inconclusive"),
    Status.NOT_APPLICABLE: ("[dim]不适用[/]", "n/a"),
    Status.MANUAL: ("[cyan]人工核查[/]", "manual"),
}


def findings_table(findings: list[Finding], title: str) -> Table:
    """One row per finding: item, status, summary; both languages in each cell."""
    table = Table(title=title, show_lines=True, expand=True)
    table.add_column("检查项 / Check", ratio=3)
    table.add_column("结果 / Status", min_width=12, no_wrap=True)
    table.add_column("摘要 / Summary", ratio=7)
    for f in findings:
        zh, en = STATUS_LABEL[f.status]
        # Summaries and details carry names and banners from the café network: never markup.
        table.add_row(f"{f.check_id}\n{f.title_zh}\n[dim]{f.title_en}[/]", f"{zh}\n[dim]{en}[/]",
                      f"{escape(f.summary_zh)}\n[dim]{escape(f.summary_en)}[/]" + escape(_detail(f)))
    return table


def _detail(f: Finding) -> str:
    """A few evidence lines an officer needs at once (the rest is in findings.json)."""
    ev = f.evidence
    lines = []
    if f.check_id == "IP-MAP":
        for m in ev.get("mismatches", [])[:12]:
            lines.append(f"  #{m['number']} {m['name'] or ''} @ {m['address']} ≠ {m['expected_address']} ({m['mac']})")
        if len(ev.get("mismatches", [])) > 12:
            lines.append(f"  … +{len(ev['mismatches']) - 12}")
        if ev.get("unidentified"):
            shown = ", ".join(f"{u['address']}{'(' + u['name'] + ')' if u.get('name') else ''}"
                              for u in ev["unidentified"][:8])
            more = f" … +{len(ev['unidentified']) - 8}" if len(ev["unidentified"]) > 8 else ""
            lines.append(f"  未识别 unidentified: {shown}{more}")
        if ev.get("sample"):
            shown = ", ".join(f"#{s['number']}@{s['address']}" if s.get("number") is not None else s["address"]
                              for s in ev["sample"])
            lines.append(f"  请现场核对 confirm on site: {shown}")
    elif f.check_id == "DUAL-UPLINK":
        for r in ev.get("snmp", []):
            if r.get("error"):
                lines.append(f"  SNMP {r['address']}: 无法读取 unreadable ({r['error']})")
            else:
                wan = ", ".join(r["wan_up"]) or "-"
                lines.append(f"  SNMP {r['address']}: 外网口 WAN up {len(r['wan_up'])} ({wan}) · 默认路由 default "
                             f"routes {len(r['default_routes'])} · 登记线路 registered {r['uplinks']}")
        if ev.get("egress"):
            registered = ", ".join(ev.get("egress_registered") or []) or "-"
            lines.append(f"  出口 egress: {', '.join(ev['egress'])} (登记 registered: {registered})")
    elif f.check_id == "ROGUE-DHCP":
        for r in ev.get("servers", [])[:8]:
            mark = "已登记 registered" if r["registered"] else "未登记 unregistered"
            lines.append(f"  {r['server_id'] or r['source_ip']} ({r['mac']}) 网关 router {r['router'] or '-'} · {mark}")
    elif f.check_id == "FOREIGN-SUBNET":
        for h in ev.get("hosts", [])[:8]:
            lines.append(f"  {h['address']} ({h['mac']}) · {h.get('how', '')}")
    elif f.check_id == "REALNAME-CLIENT" and ev.get("missing"):
        shown = ", ".join(ev["missing"][:12]) + (f" … +{len(ev['missing']) - 12}" if len(ev["missing"]) > 12 else "")
        lines.append(f"  未检测到客户端 no client: {shown}")
    elif f.check_id == "DUAL-BILLING":
        for r in ev.get("billing_servers", [])[:8]:
            mark = "已登记 registered" if r.get("registered") else "未登记 unregistered"
            lines.append(f"  {r['address']} ({r.get('mac') or '-'}) {r.get('product') or '?'} · {mark}")
    elif f.check_id == "AUDIT-SYSTEM":
        for r in ev.get("servers", [])[:8]:
            state = {True: "运行 up", False: "未运行 down", None: "未知 unknown"}[r.get("up")]
            lines.append(f"  {r['address']} {r.get('product') or ''} · {state}")
    elif f.check_id == "VIDEO-SYSTEM":
        for r in ev.get("cameras", [])[:8]:
            lines.append(f"  {r['address']} ({r.get('mac') or '-'}) · {', '.join(r.get('how', []))}")
    elif f.check_id == "LOG-RETENTION":
        if ev.get("today"):
            lines.append(f"  今天 today {ev['today']} ({ev.get('timezone')}) · 须覆盖 required "
                         f"{ev.get('window_first')} – {ev.get('window_last')}")
        for s in ev.get("sources", [])[:8]:
            key = "公钥已核实 key pinned" if s.get("host_key_pinned") else "公钥仅记录 key recorded only"
            if s.get("error"):
                lines.append(f"  {s['address']}:{s['port']} 无法读取 unreadable ({s['error']})")
                continue
            lines.append(f"  {s['address']}:{s['port']} · {key}")
            for d in s.get("folders", [])[:8]:
                if d.get("error"):
                    lines.append(f"    {d['path']}: 无法读取 unreadable ({d['error']})")
                    continue
                gaps = [a if a == b else f"{a}~{b}" for a, b in d.get("gaps", [])]
                shown = ", ".join(gaps[:4]) + (f" … +{len(gaps) - 4}" if len(gaps) > 4 else "") or "-"
                lines.append(f"    {d['path']}: 最早 oldest {d.get('oldest') or '-'} · 最新 newest "
                             f"{d.get('newest') or '-'} · 文件 files {d.get('files')} · 缺失 gaps {shown}")
    return ("\n" + "\n".join(lines)) if lines else ""


def print_findings(console: Console, findings: list[Finding], title: str) -> None:
    """The measured findings as a table, then the items left to the officers in a short list."""
    measured = [f for f in findings if f.status is not Status.MANUAL]
    manual = [f for f in findings if f.status is Status.MANUAL]
    console.print(findings_table(measured, title))
    if manual:
        console.print("[cyan]人工核查项 / items for the officers to check by hand:[/]")
        for f in manual:
            console.print(f"  {f.check_id:17} {f.title_zh} [dim]· {escape(f.summary_zh)}[/]", highlight=False)
