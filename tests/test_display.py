"""The findings table shows text from the café network literally: names and banners are never rich markup."""

from __future__ import annotations

from rich.console import Console

from probe.display import print_findings
from probe.findings import Finding, Status


def _finding(summary: str, evidence: dict) -> Finding:
    return Finding(check_id="IP-MAP", status=Status.FAIL, title_zh="终端IP与机器编号一致", title_en="IP map",
                   summary_zh=summary, summary_en=summary, evidence=evidence, legal_basis=[])


def test_network_text_is_printed_as_is():
    hostile = "[bold red]PC-01[/] [billing] [link=http://x]y[/link]"
    finding = _finding(f"服务 {hostile}", {"unidentified": [{"address": "198.18.1.5", "name": hostile}]})
    console = Console(record=True, width=400, color_system=None)
    print_findings(console, [finding], "t")
    text = console.export_text()
    assert text.count(hostile) == 3  # summary in both languages and the detail line, unchanged
