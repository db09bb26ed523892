"""The case file PDF (现场检查记录): real WeasyPrint, real fonts, read back with poppler's pdftotext and pdftoppm."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from agent_api.casefile import evidence_tree, format_time, render_casefile_html, render_casefile_pdf
from probe.findings import Status
from tests.casekit import TZ, make_case
from tests.reportkit import VENUE_NAME

TITLE = "互联网上网服务营业场所现场检查记录"

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
                                reason="poppler-utils (pdftotext, pdftoppm) not installed")


def _text(pdf: bytes, tmp: Path) -> str:
    path = tmp / "case.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_casefile_pdf_text_and_render(tmp_path):
    case = make_case(tmp_path)
    # How long rendering takes is bench/casefile.py's figure, not a pass/fail here.
    pdf = render_casefile_pdf(case)
    assert pdf.startswith(b"%PDF-")
    text = _text(pdf, tmp_path)
    flat = re.sub(r"\s+", "", text)
    for needle in (TITLE, VENUE_NAME, case.report_id, case.sha256, case.key_id, "FZ-MW-0042", "FZ-2026-11-007",
                   "350100123", "350100456", "probe-test", "发现问题已责令改正", "张伟", "李娜",
                   "2026-11-2410:00:00+08:00", "终端IP与机器编号一致", "198.18.10.140", "招牌与执照名称相符", "核对无误",
                   "检查人员签名", "场所负责人签名", "cafe-probeverifyreport.dsse.json--pubkeyprobe.pub",
                   "《互联网上网服务营业场所管理条例》"):
        assert needle.replace(" ", "") in flat, needle
    assert flat.count("检查人员签名") == 2
    pages = re.findall(r"第\s*(\d+)\s*页\s*共\s*(\d+)\s*页", text)
    assert pages and pages[0] == ("1", pages[0][1]) and len(pages) == int(pages[0][1])

    (tmp_path / "page").mkdir()
    png = subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(tmp_path / "case.pdf"),
                          str(tmp_path / "page" / "p")], capture_output=True, timeout=60)
    assert png.returncode == 0, png.stderr
    [page1] = list((tmp_path / "page").glob("*.png"))
    assert page1.read_bytes().startswith(b"\x89PNG") and page1.stat().st_size > 5000


def test_casefile_before_signoff_and_long_evidence(tmp_path):
    case = make_case(tmp_path, many_hosts=80, signed=False)
    html = render_casefile_html(case)
    assert '<html lang="zh-CN">' in html and "&lt;unknown&gt;" in html and "<unknown>" not in html
    text = re.sub(r"\s+", "", _text(render_casefile_pdf(case), tmp_path))
    assert "尚无电子签署" in text and TITLE in text
    # Long lists are cut in the PDF with a pointer to the full data, never silently.
    assert "198.18.10.0" in text and "198.18.10.79" not in text and "另有55行未列出" in text


def test_evidence_tree_shapes():
    tree = evidence_tree({"servers": [{"address": "a", "roles": ["billing", "audit"]}, {"address": "b", "up": False}],
                          "gaps": [["2026-01-01", "2026-01-03"]], "seen": 5, "missing": []}, max_rows=10)
    assert tree.kind == "map"
    servers = tree.items[0][2]
    assert servers.kind == "table" and [c for c, _ in servers.columns] == ["address", "roles", "up"]
    assert servers.rows[0][1].text == "billing, audit" and servers.rows[1][2].text == "否 / no"
    assert servers.rows[0][2].text == "—"  # a column a row lacks
    gaps = tree.items[1][2]
    assert gaps.kind == "list" and gaps.children[0].text == "2026-01-01, 2026-01-03"
    assert tree.items[2][2].text == "5" and tree.items[3][2].text == "（无 / none）"
    cut = evidence_tree(list(range(30)), max_rows=10)
    assert cut.text.startswith("0, 1,") and "另有 20 项" in cut.text


def test_time_keeps_its_offset():
    assert format_time(datetime(2026, 11, 24, 10, 0, 5, tzinfo=TZ)) == "2026-11-24 10:00:05 +08:00"
    assert format_time("2026-11-24T02:00:00+00:00") == "2026-11-24 02:00:00 +00:00"
    assert format_time(None) == "—"


def test_unmeasured_checks_listed_apart(tmp_path):
    case = make_case(tmp_path)
    # Every automatic check is measured by now: a report from an older probe version still has unmeasured ones.
    older = [f.model_copy(update={"status": Status.MANUAL, "summary_zh": "本版本探针尚未自动检查此项，请人工核查。",
                                  "evidence": {}}) if f.check_id == "LOG-RETENTION" else f
             for f in case.payload.findings]
    case = case.model_copy(update={"payload": case.payload.model_copy(update={"findings": older})})
    html = render_casefile_html(case)
    pending = [f for f in case.payload.findings if f.status is Status.MANUAL
               and f.check_id not in {m.item_id for m in case.manual_items}]
    assert [f.check_id for f in pending] == ["LOG-RETENTION"]
    assert "本版本探针未自动检查" in html and all(f.check_id in html for f in pending)
    failed = [f for f in case.payload.findings if f.status is Status.FAIL]
    assert failed and all(f.summary_zh in html for f in failed)
    # Pending checks are listed by name only, not as findings with evidence and law.
    assert html.count('class="finding ') == len(case.payload.findings) - len(pending) - len(case.manual_items)
