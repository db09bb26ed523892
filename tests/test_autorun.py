"""Autorun without a lab: the journal, the carrier watch, the run's end patterns, and how the agent shows an
interrupted run or a failed clock (real app on SQLite, real signed reports, real PDF)."""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from probe.autorun import Autorun, AutorunConfig, Deliverer, Journal, end_pattern, read_journal
from probe.iface import CarrierWatch
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line
from probe.observations import ClockCheck
from probe.outbox import Outbox
from tests.agentkit import make_agent, served_agent, setup_agent
from tests.conftest import VENV_BIN
from tests.reportkit import make_report, queue_report

TZ = ZoneInfo("Asia/Shanghai")
REASON = "运行在“services”阶段中断 / interrupted during stage 'services': 网吧网线已断开 / café link lost its carrier"
BAD_CLOCK = ClockCheck(checked_at=datetime(2026, 11, 24, 9, 59, tzinfo=TZ), synchronised=False,
                       device_url="http://198.19.254.1:8765", device_offset=-93.25, device_rtt=0.004, tolerance=5.0,
                       ok=False, reason="时钟偏差超过容差 / clock off by more than the tolerance")
GOOD_CLOCK = BAD_CLOCK.model_copy(update={"synchronised": True, "device_offset": 0.4, "ok": True, "reason": ""})


# ------------------------------------------------------------------------------------------- agent display

@pytest.fixture
def agent(tmp_path):
    agent = make_agent(tmp_path)
    yield agent
    agent.app.state.agent.engine.dispose()


def _submit(agent, **overrides) -> str:
    envelope, verified = make_report(agent.probe_key, **overrides)
    assert agent.submit(envelope).status_code == 201
    return verified.payload.report_id


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_web_list_and_detail_mark_an_incomplete_run_and_a_clock_error(agent):
    clean = _submit(agent, clock=GOOD_CLOCK)
    broken = _submit(agent, complete=False, incomplete_reason=REASON, clock=BAD_CLOCK)
    officer = agent.officer("zhangwei", "350100123")

    listing = officer.get("/ui/reports")
    assert listing.status_code == 200
    rows = {rid: _flat(row) for row in re.findall(r"<tr>.*?</tr>", listing.text, re.S)
            for rid in (clean, broken) if f"/ui/reports/{rid}" in row}
    assert "未完成（中断） incomplete (interrupted)" in rows[broken] and "时钟异常 clock error" in rows[broken]
    assert "未完成" not in rows[clean] and "时钟异常" not in rows[clean]

    page = _flat(officer.get(f"/ui/reports/{broken}").text)
    assert f"未完成（中断） incomplete (interrupted) ：{REASON}" in page
    assert "时钟异常 clock error ：与检查设备相差 -93.2 秒（容差 5 秒） / -93.2 s off the inspector device" in page
    assert BAD_CLOCK.reason in page
    good = _flat(officer.get(f"/ui/reports/{clean}").text)
    assert "未完成" not in good and "时钟异常" not in good and "正常 ok · 与检查设备相差 offset from the device +0.4 s" in good


def test_json_export_and_casefile_pdf_carry_the_incomplete_reason_and_the_clock(agent, tmp_path):
    rid = _submit(agent, complete=False, incomplete_reason=REASON, clock=BAD_CLOCK)
    officer = agent.officer("lina", "350100456")
    case = officer.get(f"/v1/reports/{rid}/export.json").json()["case"]["payload"]
    assert case["complete"] is False and case["incomplete_reason"] == REASON
    assert case["clock"]["ok"] is False and case["clock"]["device_offset"] == -93.25

    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed")
    pdf = officer.get(f"/v1/reports/{rid}/casefile.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    (tmp_path / "case.pdf").write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", str(tmp_path / "case.pdf"), "-"], capture_output=True, text=True,
                          timeout=30, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    assert "未完成（中断）incomplete(interrupted)" in flat and "网吧网线已断开" in flat
    assert "时钟异常clockerror" in flat and "与检查设备相差-93.2秒" in flat



# ----------------------------------------------------------------------------------------------- autorun parts

def test_journal_lines_carry_the_offset_the_event_and_the_led(tmp_path):
    echo = io.StringIO()
    journal = Journal(tmp_path / "autorun.log", TZ, echo)
    journal.write("start", {"pid": 1})
    journal.write("waiting", {"iface": "eth0"}, led="waiting")
    journal.write("carrier", {"iface": "eth0", "carrier": True})
    journal.close()
    with (tmp_path / "autorun.log").open("a") as fh:
        fh.write('{"at": "2026-11-24T10:00')  # a line torn by a power cut
    lines = read_journal(tmp_path / "autorun.log")
    assert [(line["event"], line["led"]) for line in lines] == [("start", "off"), ("waiting", "waiting"),
                                                                 ("carrier", "waiting")]
    assert all(datetime.fromisoformat(line["at"]).utcoffset().total_seconds() == 8 * 3600 for line in lines)
    assert echo.getvalue().splitlines() == (tmp_path / "autorun.log").read_text().splitlines()[:3]


@pytest.mark.parametrize("complete, clock_ok, failures, pattern", [
    (True, True, 0, "done_ok"), (True, None, 0, "done_ok"), (True, True, 2, "done_failures"),
    (False, True, 0, "error"), (True, False, 0, "error"), (False, False, 3, "error")])
def test_a_finished_run_shows_done_only_when_complete_with_a_good_clock(complete, clock_ok, failures, pattern):
    assert end_pattern(complete, clock_ok, failures) == pattern


def test_carrier_watch_reads_the_kernel_state_and_waits_with_a_timeout():
    # Loopback of this namespace, read only: netlink notifications and one state query, nothing sent.
    watch = CarrierWatch("lo")
    try:
        assert watch.carrier and watch.wait(True, 0.1) and not watch.raised
        started = time.monotonic()
        # At least the timeout: it waited for a carrier loss that never came. The upper bound only catches a hang.
        assert watch.wait(False, 0.4) is False and 0.3 < time.monotonic() - started < 10
        cancel = threading.Event()
        cancel.set()
        assert watch.wait(False, None, cancel) is False
    finally:
        watch.close()
    with pytest.raises(OSError, match="no such interface"):
        CarrierWatch("nosuch0")


def test_deliverer_sends_the_outbox_and_keeps_what_it_cannot_send(tmp_path):
    home = ProbeHome(tmp_path / "home")
    ident = home.keygen("probe-deliver")
    data = tmp_path / "agent"
    setup_agent(data, probe_pub=home.public_key_path, probe_id=ident.probe_id)
    journal = Journal(tmp_path / "autorun.log", TZ, None)
    stopping = threading.Event()
    sent: list[str] = []
    box = Outbox(home.outbox_path)
    first = queue_report(home)
    with served_agent(data, tmp_path / "agent.log") as url:
        home.pin_agent(url, public_line(load_public_key(data / "agent.pub")))
        deliverer = Deliverer(home, None, journal, sent.append, stopping)
        deliverer.kick()
        _until(lambda: sent == [first])
    assert [e.report_id for e in box.sent()] == [first] and box.pending() == []
    second = queue_report(home)  # the device has gone: the report stays, tried again with a growing pause
    deliverer.kick()
    _until(lambda: any(line["event"] == "delivery" and line["detail"]["outcome"] == "unreachable"
                       for line in read_journal(tmp_path / "autorun.log")))
    stopping.set()
    deliverer.close()
    assert [e.report_id for e in box.pending()] == [second] and sent == [first]


def test_autorun_refuses_a_hardware_profile_whose_ports_are_absent(tmp_path):
    profile = tmp_path / "hw.yaml"
    profile.write_text("profile: laptop\ncafe_port: {name: nosuch0}\n")
    proc = subprocess.run([str(VENV_BIN / "cafe-probe"), "autorun", "--once", "--hardware", str(profile),
                           "--home", str(tmp_path / "home")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nosuch0" in proc.stderr and " / " in proc.stderr
    assert not (tmp_path / "home" / "autorun.log").exists()


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_plug_in_with_no_valid_pack_asks_nothing_and_says_why(tmp_path):
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-empty")
    runner = Autorun(AutorunConfig(home=home, cafe_port="lo", officer_link=None, leds={}, clock_tolerance=5,
                                   once=True, echo=None))
    watch = CarrierWatch("lo")  # only its state is read: with nothing staged no link is opened, no frame sent
    try:
        result = runner.cycle(watch)
    finally:
        watch.close()
        runner.led.close()
        runner.journal.close()
    assert result.outcome == "none" and result.pattern == "error"
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["outcome.json"]  # no identify.pcap: no link
    lines = read_journal(home.root / "autorun.log")
    assert [(line["event"], line["led"]) for line in lines] == [("link_up", "working"), ("candidates", "working"),
                                                                 ("no_match", "error")]
    assert "no valid task pack" in lines[-1]["detail"]["reason"]
