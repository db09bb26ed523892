"""The department's draw in a real browser: Debian's Chromium (headless, via Playwright) against `cafe-agent serve`.

An officer logs in, imports the demo registries through the upload form,
confirms the credit code flagged by its checksum, creates a plan, prepares a
draw, enters two witnesses' dice digits, draws and publishes; then the public
page shows the picks, and the bundle and the verifier downloaded through the
browser re-derive the same picks in a fresh Python process with nothing else.
Never `playwright install`: the browser is /usr/bin/chromium. Set
CAFE_SHOTS_DIR to keep the screenshots.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agent_api import draw_algorithm as algo
from lab.registries import write_demo_registries
from tests.agentkit import served_agent, setup_agent
from tests.browserkit import CHROMIUM, chromium_page, screenshot

OFFICERS = {"zhangwei": ("张伟", "350100123", "zhang-pass-1"), "chief": ("赵局长", "350199001", "chief-pass-99")}
TASK = "FZ-MW-2026-01"
WITNESSES = [("见证甲", "31415926535"), ("见证乙", "8979323846")]
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
PICK_LINE = re.compile(r"#\d+\s+([0-9A-Z]{18})\s")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian package chromium)")


@pytest.fixture
def served(tmp_path):
    """A running `cafe-agent serve` with two officers, set up through the CLI."""
    data = tmp_path / "data"
    setup_agent(data, officers=OFFICERS)
    with served_agent(data, tmp_path / "serve.log") as base:
        yield base


def _path(page) -> str:
    return urlsplit(page.url).path


def _ok(page) -> str:
    return page.inner_text(".flash.ok")


def _import(page, kind: str, path: Path) -> str:
    page.select_option('#import select[name="kind"]', kind)
    page.set_input_files('#import input[name="file"]', str(path))
    page.click('#import button[type="submit"]')
    return _ok(page)


def test_draw_ceremony_in_chromium(served, tmp_path):
    base = served
    demo = write_demo_registries(tmp_path / "demo")
    shots = Path(os.environ.get("CAFE_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    run = tmp_path / "run"  # the downloads, and nothing else, for the fresh verifier process
    run.mkdir()
    with chromium_page(base) as watched:
        page = watched.page

        page.goto(f"{base}/ui/registry")
        assert page.url == f"{base}/ui/login"
        page.fill('input[name="username"]', "zhangwei")
        page.fill('input[name="password"]', OFFICERS["zhangwei"][2])
        page.click('button[type="submit"]')
        page.goto(f"{base}/ui/registry")
        assert page.url == f"{base}/ui/registry/venues"

        # The demo registries through the upload form; the flagged credit code confirmed on its venue page.
        assert "导入完成" in _import(page, "venues", demo.venues)
        summary = page.inner_text("#summary")
        assert re.search(r"新增\s*Added\s*62", summary) and demo.mismatch_code in summary
        screenshot(page, shots / "registry-import.png", full_page=True)
        assert "导入完成" in _import(page, "inspectors", demo.inspectors)
        assert "共 9 条" in page.inner_text("main")
        assert "导入完成" in _import(page, "conflicts", demo.conflicts)
        page.goto(f"{base}/ui/registry/venues")
        page.click(f'#unconfirmed a[href="/ui/registry/venues/{demo.mismatch_code}"]')
        page.fill('#confirm input[name="note"]', "已核对营业执照原件，代码以执照为准")
        page.click('#confirm button[type="submit"]')
        assert "信用代码已确认" in _ok(page) and "已人工确认" in page.inner_text("main")
        screenshot(page, shots / "venue.png", full_page=True)

        # A plan, then a draw prepared from its first round.
        page.click('header nav a[href="/ui/plans"]')
        page.select_option('#new select[name="jurisdiction"]', "FZ-MW")
        page.fill('#new input[name="year"]', "2026")
        page.click('#new button[type="submit"]')
        assert _path(page) == "/ui/plans/FZ-MW-2026" and "抽查计划已创建" in _ok(page)
        screenshot(page, shots / "plan.png", full_page=True)
        page.click('#schedule a.button >> nth=0')
        assert page.input_value('#prepare input[name="round_no"]') == "1"
        page.fill('#prepare input[name="task_number"]', TASK)
        page.fill('#prepare input[name="task_name"]', "2026年第1轮网吧“双随机”检查")
        page.fill('#prepare input[name="check_start"]', "2026-11-02")
        page.fill('#prepare input[name="check_end"]', "2026-11-13")
        page.click('#prepare button[type="submit"]')
        assert _path(page) == f"/ui/draws/{TASK}" and "快照与承诺值已固定并公布" in _ok(page)
        commitment = page.inner_text("dl.announce dd.big >> nth=0")
        assert re.fullmatch(r"[0-9a-f]{64}", commitment.replace("\n", "").replace(" ", ""))
        assert page.eval_on_selector("button.big", "e => e.getBoundingClientRect().height") >= 44
        screenshot(page, shots / "draw-prepared.png", full_page=True)

        for n, (name, digits) in enumerate(WITNESSES, 1):
            page.fill(f'input[name="witness_name_{n}"]', name)
            page.fill(f'input[name="witness_digits_{n}"]', digits)
        page.click('#witness button[type="submit"]')
        assert "抽取完成" in _ok(page)
        drawn = page.eval_on_selector_all("table.picks tbody tr td:nth-child(2)", "es => es.map(e => e.innerText)")
        assert len(drawn) == 4  # 5% of 60 open venues is 3, plus 1 of the 6 blacklisted
        screenshot(page, shots / "draw-drawn.png", full_page=True)
        page.click('#publish button[type="submit"]')
        assert "已公布" in _ok(page)

        # The public page, the bundle and the verifier, as anyone would get them.
        page.click('#published a[href="/public/draws/' + TASK + '"]')
        assert page.url == f"{base}/public/draws/{TASK}"
        shown = page.eval_on_selector_all("table.picks tbody tr td:nth-child(2)", "es => es.map(e => e.innerText)")
        assert shown == drawn and "见证甲" in page.inner_text("#inputs")
        assert commitment == page.inner_text("dl.announce dd.big >> nth=0")
        screenshot(page, shots / "public-draw.png", full_page=True)
        with page.expect_download() as info:
            page.click('#verify a[href$="/bundle.json"]')
        bundle_name = info.value.suggested_filename
        info.value.save_as(run / bundle_name)
        with page.expect_download() as info:
            page.click('#verify a[href="/public/verify_draw.py"]')
        assert info.value.suggested_filename == "verify_draw.py"
        info.value.save_as(run / "verify_draw.py")
        command = page.inner_text("pre.command").split()

    assert not watched.elsewhere, f"the pages reached beyond the device: {watched.elsewhere}"
    assert not watched.console_errors, watched.console_errors
    assert [r for r in watched.refused if r[0] != "/favicon.ico"] == [], watched.refused
    assert (run / "verify_draw.py").read_bytes() == Path(algo.__file__).read_bytes()
    assert command == ["python3", "verify_draw.py", bundle_name]
    assert sorted(path.name for path in run.iterdir()) == sorted(["verify_draw.py", bundle_name])
    proc = subprocess.run([PYTHON, "-I", "verify_draw.py", bundle_name], cwd=run, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "结论 / verdict: 通过" in proc.stdout
    assert PICK_LINE.findall(proc.stdout) == drawn
