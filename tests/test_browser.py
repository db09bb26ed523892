"""The officer's path in a real browser: Debian's Chromium (headless, via Playwright) against `cafe-agent serve`.

Never `playwright install`: the browser is /usr/bin/chromium from the set-up.
The server is a real subprocess on 127.0.0.1 and a free port, with officers and
the probe added through the CLI and the report submitted over HTTP, signed.
Set CAFE_SHOTS_DIR to keep the screenshots (e.g. to look at the layout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.agentkit import served_agent, setup_agent
from tests.browserkit import CHROMIUM, chromium_page, screenshot
from tests.reportkit import VENUE_NAME, make_probe_key, make_report

TITLE = "互联网上网服务营业场所现场检查记录"
OFFICERS = {"zhangwei": ("张伟", "350100123", "zhang-pass-1"), "lina": ("李娜", "350100456", "lina-pass-22")}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian package chromium)")


@pytest.fixture
def served(tmp_path):
    """A running `cafe-agent serve` with two officers, an enrolled probe and one submitted report."""
    data = tmp_path / "data"
    priv, pub = make_probe_key(tmp_path)
    setup_agent(data, probe_pub=pub, label="马尾-1号", officers=OFFICERS)
    with served_agent(data, tmp_path / "serve.log") as base:
        envelope, verified = make_report(priv)
        r = httpx.post(f"{base}/v1/reports", content=envelope, headers={"Content-Type": "application/json"},
                       timeout=10)
        assert r.status_code == 201, r.text
        yield base, verified


def _sign(page, username: str) -> None:
    page.fill('#signoff input[name="username"]', username)
    page.fill('#signoff input[name="password"]', OFFICERS[username][2])
    page.click('#signoff button[type="submit"]')


def test_officer_path_in_chromium(served, tmp_path):
    base, verified = served
    report_id = verified.payload.report_id
    shots = Path(os.environ.get("CAFE_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with chromium_page(base) as watched:
        page = watched.page

        page.goto(f"{base}/ui/reports")
        assert page.url == f"{base}/ui/login"
        page.fill('input[name="username"]', "zhangwei")
        page.fill('input[name="password"]', "wrong-password")
        page.click('button[type="submit"]')
        assert "用户名或密码错误" in page.inner_text(".flash.error")
        page.fill('input[name="password"]', OFFICERS["zhangwei"][2])
        page.click('button[type="submit"]')
        assert page.url == f"{base}/ui/reports"
        screenshot(page, shots / "reports.png")

        page.click(f"text={VENUE_NAME}")
        assert page.url == f"{base}/ui/reports/{report_id}"
        # The stylesheet is loaded and applied: a failed finding is drawn red.
        colour = page.eval_on_selector(".finding.fail .status", "e => getComputedStyle(e).color")
        assert colour == "rgb(179, 38, 30)"
        screenshot(page, shots / "detail-top.png")

        items = page.eval_on_selector_all('#manual input[type="radio"][value="pass"]', "es => es.map(e => e.name)")
        assert len(items) == 6
        for name in items:
            page.check(f'#manual input[name="{name}"][value="pass"]')
        page.fill('#manual input[name="note__SIGNAGE"]', "招牌与执照一致")
        page.click('#manual button[type="submit"]')
        assert "人工检查项已保存" in page.inner_text(".flash.ok")

        page.select_option('select[name="result_type"]', "corrected")
        page.fill('textarea[name="result_note"]', "IP 地址当场改正")
        page.click('#result button[type="submit"]')
        assert "检查结果类型已保存" in page.inner_text(".flash.ok")

        _sign(page, "zhangwei")
        assert "还需另一名检查人员签署" in page.inner_text(".flash.ok")
        _sign(page, "lina")
        assert "案卷已锁定" in page.inner_text(".flash.ok")
        assert page.is_disabled('#manual button[type="submit"]') and page.is_disabled("#result select")
        screenshot(page, shots / "detail-full.png", full_page=True)

        with page.expect_download() as info:
            page.click(f'a[href="/ui/reports/{report_id}/casefile.pdf"]')
        pdf = tmp_path / "casefile.pdf"
        info.value.save_as(pdf)

    assert not watched.elsewhere, f"the page reached beyond the device: {watched.elsewhere}"
    assert not watched.console_errors, watched.console_errors
    # The wrong password (401) is the only refusal, apart from Chromium asking for a favicon.
    assert [r for r in watched.refused if r[0] != "/favicon.ico"] == [("/ui/login", 401)], watched.refused
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    flat = re.sub(r"\s+", "", text.stdout)
    for needle in (TITLE, VENUE_NAME, report_id, verified.sha256, "张伟", "李娜", "发现问题已责令改正", "招牌与执照一致"):
        assert needle in flat, needle
    png = subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(pdf), str(shots / "casefile")],
                         capture_output=True, timeout=60)
    assert png.returncode == 0, png.stderr
    assert any(p.read_bytes().startswith(b"\x89PNG") for p in shots.glob("casefile*.png"))
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
