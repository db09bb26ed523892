"""LOG-RETENTION: the pure coverage function, the check on real observation models, and ``cafe-probe logs``.

The café: 198.18.6.0/24. Two log sources: 198.18.6.5:22 (host key pinned,
a billing folder named by day and a server folder dated from content) and
198.18.6.6:2222 (no pinned key, a Windows OpenSSH folder). The run starts
2026-11-24 10:00 Asia/Shanghai, so the 180-day window is 2026-05-28 to
2026-11-23 and today's log is not required.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from datetime import date, datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from probe.checks import CHECKS, CheckContext
from probe.checks.log_retention import coverage, folder_outcome
from probe.evaluate import evaluate
from probe.findings import Status, Verdict
from probe.observations import DayRange, LogFolderRead, LogSourceRead, Observations
from probe.profile import VenueProfile, parse_profile
from probe.rules import load_ruleset
from tests.reportkit import make_observations

D = date.fromisoformat
TODAY = D("2026-11-24")
FIRST, LAST = "2026-05-28", "2026-11-23"   # the window: 180 full days before today
FULL = (FIRST, "2026-11-24")
S5, S6 = "198.18.6.5", "198.18.6.6"
BILLING, SERVER, WINDOWS = "/var/log/billing", "/var/log/server", "C:/logs"


def _host_key() -> str:
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", 32) + bytes(range(32))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


HOST_KEY = _host_key()
SEEN_KEY = "ssh-ed25519 " + base64.b64encode(b"another key").decode()

PROFILE = f"""
venue: {{id: T-6, name: 测试网吧, licensed_terminals: 10}}
network: {{subnets: [198.18.6.0/24], gateways: [198.18.6.1]}}
terminals: {{first_address: 198.18.6.101}}
servers:
  log_sources:
    - address: {S5}
      username: auditor
      password_file: log5.pass
      host_key: {HOST_KEY}
      paths:
        - {{path: {BILLING}, name_pattern: 'billing-%Y%m%d.log'}}
        - {{path: {SERVER}}}
    - address: {S6}
      port: 2222
      username: reader
      key_file: log6.key
      paths: [{{path: '{WINDOWS}', recursive: true}}]
"""
BARE = """
venue: {id: T-6, name: 测试网吧, licensed_terminals: 10}
network: {subnets: [198.18.6.0/24], gateways: [198.18.6.1]}
terminals: {first_address: 198.18.6.101}
"""


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> VenueProfile:
    directory = tmp_path_factory.mktemp("profile")
    for name in ("log5.pass", "log6.key"):
        (directory / name).write_text("secret\n")
        os.chmod(directory / name, 0o600)
    return parse_profile(PROFILE, directory)


@pytest.fixture(scope="module")
def bare() -> VenueProfile:
    return parse_profile(BARE, Path("."))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def folder(path: str, *spans: tuple[str, str], undated: int = 0, error: str | None = None) -> LogFolderRead:
    """A listed folder covering ``spans`` (one file per covered day, plus the undated ones)."""
    covered = [DayRange(first=D(a), last=D(b)) for a, b in spans]
    days = sum((r.last - r.first).days + 1 for r in covered)
    return LogFolderRead(path=path, ok=error is None, error=error, files=days + undated, dated_by_name=days,
                         undated=undated, covered=covered, oldest=covered[0].first if covered else None,
                         newest=covered[-1].last if covered else None,
                         listing_sha256=None if error else _sha(path))


def source(address: str, *folders: LogFolderRead, port: int = 22, pinned: bool = True,
           error: str | None = None) -> LogSourceRead:
    return LogSourceRead(address=IPv4Address(address), port=port, username="auditor", ok=error is None, error=error,
                         host_key_seen=SEEN_KEY if error == "host_key_mismatch" or not pinned else HOST_KEY,
                         host_key_pinned=pinned and error is None, folders=list(folders), seconds=0.5)


def good5(**kw: Any) -> LogSourceRead:
    return source(S5, folder(BILLING, FULL), folder(SERVER, FULL), **kw)


def good6(pinned: bool = False) -> LogSourceRead:
    return source(S6, folder(WINDOWS, FULL), port=2222, pinned=pinned)


def _obs(logs: list[LogSourceRead] | None, started: datetime | None = None) -> Observations:
    obs = make_observations(started, hosts=[("198.18.6.1", "02:00:00:00:06:01", None)], subnet="198.18.6.0/24")
    return obs.model_copy(update={"logs": logs})


def _run(obs: Observations, profile: VenueProfile) -> Verdict:
    thresholds = dict(load_ruleset().checks["LOG-RETENTION"].thresholds)
    return CHECKS["LOG-RETENTION"](CheckContext(observations=obs, profile=profile, thresholds=thresholds))


def _reported(obs: Observations, profile: VenueProfile, verdict: Verdict, *needles: str):
    """``cafe-probe evaluate`` on the observations as saved: same status and evidence, the catalogue's words."""
    saved = Observations.model_validate_json(obs.model_dump_json())
    f = next(f for f in evaluate(saved, profile, load_ruleset()) if f.check_id == "LOG-RETENTION")
    assert (f.status, f.evidence) == (verdict.status, json.loads(json.dumps(verdict.evidence)))
    rule = load_ruleset().checks["LOG-RETENTION"]
    assert f.summary_zh == rule.messages[verdict.reason].zh.format_map(verdict.values)
    assert f.summary_en == rule.messages[verdict.reason].en.format_map(verdict.values)
    for needle in needles:
        assert needle in f.summary_zh and needle in f.summary_en, needle
    assert f.legal_basis and f.result_type == ("pending_followup" if f.status is Status.FAIL else None)
    return f


# ------------------------------------------------------------------ coverage()


def _cov(*spans: tuple[str, str], today: date = TODAY, days: int = 180, allowance: int = 0):
    return coverage([DayRange(first=D(a), last=D(b)) for a, b in spans], today, days, allowance)


def _gaps(cov) -> list[tuple[str, str]]:
    return [(g.first.isoformat(), g.last.isoformat()) for g in cov.gaps]


def test_exactly_the_window_meets():
    cov = _cov((FIRST, LAST))
    assert (cov.window_first, cov.window_last) == (D(FIRST), D(LAST))
    assert (cov.window_last - cov.window_first).days + 1 == 180
    assert (cov.oldest, cov.newest, cov.gaps, cov.longest_gap, cov.missing_days, cov.meets) == (
        D(FIRST), D(LAST), [], 0, 0, True)


def test_one_day_short_fails_even_with_an_allowance():
    cov = _cov(("2026-05-29", LAST))
    assert (_gaps(cov), cov.longest_gap, cov.meets) == ([(FIRST, FIRST)], 1, False)
    # The allowance forgives a hole inside the window, not a history that starts too late.
    assert _cov(("2026-05-29", LAST), allowance=1).meets is False


def test_gap_of_exactly_the_allowance():
    spans = (("2026-05-01", "2026-08-09"), ("2026-08-12", LAST))
    assert _gaps(_cov(*spans)) == [("2026-08-10", "2026-08-11")]
    assert _cov(*spans, allowance=2).meets is True
    one = _cov(*spans, allowance=1)
    assert (one.longest_gap, one.missing_days, one.meets) == (2, 2, False)


def test_gaps_at_both_ends_and_inside():
    cov = _cov(("2026-06-01", "2026-07-01"), ("2026-07-03", "2026-11-20"))
    assert _gaps(cov) == [(FIRST, "2026-05-31"), ("2026-07-02", "2026-07-02"), ("2026-11-21", LAST)]
    assert (cov.oldest, cov.newest, cov.longest_gap, cov.missing_days, cov.meets) == (
        D("2026-06-01"), D("2026-11-20"), 4, 4 + 1 + 3, False)


def test_today_is_neither_required_nor_a_gap():
    assert _cov((FIRST, LAST)).meets is True                        # no log for today yet: fine
    with_today = _cov(FULL)
    assert (with_today.newest, with_today.gaps, with_today.meets) == (TODAY, [], True)
    only_today = _cov(("2026-11-24", "2026-11-24"))
    assert (only_today.oldest, _gaps(only_today), only_today.meets) == (TODAY, [(FIRST, LAST)], False)


def test_empty():
    cov = _cov()
    assert (cov.oldest, cov.newest, _gaps(cov), cov.longest_gap, cov.missing_days, cov.meets) == (
        None, None, [(FIRST, LAST)], 180, 180, False)


def test_ranges_are_normalised_and_days_outside_the_window_count_for_oldest_and_newest_only():
    cov = _cov(("2026-09-01", LAST), ("2026-12-01", "2026-12-05"), ("2025-01-01", "2026-06-30"),
               ("2026-07-01", "2026-08-31"), ("2026-06-10", "2026-06-01"), ("2026-06-05", "2026-07-04"))
    assert (cov.oldest, cov.newest, cov.gaps, cov.meets) == (D("2025-01-01"), D("2026-12-05"), [], True)


def test_other_windows_and_bad_thresholds():
    zero = _cov(days=0)
    assert (zero.window_first, zero.window_last, zero.gaps, zero.meets) == (TODAY, D(LAST), [], False)
    assert _cov(("2026-11-20", LAST), days=4).meets is True
    assert _cov(("2026-11-21", LAST), days=4).meets is False
    early = coverage([], date(1, 1, 3), 180, 0)  # no overflow at the start of the calendar
    assert (early.window_first, _gaps(early)) == (date(1, 1, 1), [("0001-01-01", "0001-01-02")])
    for days, allowance in ((-1, 0), (180, -1)):
        with pytest.raises(ValueError):
            coverage([], TODAY, days, allowance)


def test_folder_outcome():
    short = _cov(("2026-06-01", LAST))
    assert folder_outcome(folder(BILLING, ("2026-06-01", LAST)), short) == "fail"
    assert folder_outcome(folder(BILLING, ("2026-06-01", LAST), undated=3), short) == "undated"
    assert folder_outcome(folder(BILLING, FULL, undated=3), _cov(FULL)) == "pass"
    assert folder_outcome(folder(BILLING, error="missing"), None) == "error"


# ------------------------------------------------------------------ the check


def _folder_ev(path: str, oldest: str | None, newest: str | None, gaps: list[list[str]], files: int,
               **kw: Any) -> dict[str, Any]:
    row = {"path": path, "name_pattern": None, "recursive": False, "oldest": oldest, "newest": newest, "gaps": gaps,
           "longest_gap": max(((D(b) - D(a)).days + 1 for a, b in gaps), default=0), "files": files,
           "dated_by_name": files, "dated_by_content": 0, "undated": 0, "listing_sha256": _sha(path),
           "error": None, "error_detail": None, "outcome": "pass" if not gaps else "fail"}
    row.update(kw)
    return row


def test_pass_exact_evidence(profile):
    obs = _obs([good5(), source(S6, folder(WINDOWS, FULL), port=2222)])
    v = _run(obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "kept")
    billing, server, windows = (_folder_ev(p, FIRST, "2026-11-24", [], 181) for p in (BILLING, SERVER, WINDOWS))
    assert v.evidence == {
        "today": "2026-11-24", "timezone": "Asia/Shanghai", "retention_days": 180, "gap_allowance_days": 0,
        "window_first": FIRST, "window_last": LAST, "observations": ["logs"],
        "sources": [
            {"address": S5, "port": 22, "username": "auditor", "host_key_seen": HOST_KEY, "host_key_pinned": True,
             "error": None, "error_detail": None, "oldest": FIRST, "newest": "2026-11-24", "gaps": [], "files": 362,
             "listing_sha256": _sha(f"{BILLING}\t{_sha(BILLING)}\n{SERVER}\t{_sha(SERVER)}\n"),
             "folders": [billing, server]},
            {"address": S6, "port": 2222, "username": "reader", "host_key_seen": HOST_KEY, "host_key_pinned": True,
             "error": None, "error_detail": None, "oldest": FIRST, "newest": "2026-11-24", "gaps": [], "files": 181,
             "listing_sha256": _sha(f"{WINDOWS}\t{_sha(WINDOWS)}\n"), "folders": [windows]}]}
    f = _reported(obs, profile, v, "180", FIRST, LAST)
    assert "2个日志来源的3个日志目录" in f.summary_zh and "3 log folder(s) of 2 log source(s)" in f.summary_en


def test_today_is_the_venue_day(profile):
    # 2026-11-23 20:00 UTC is already 2026-11-24 04:00 in Shanghai: the window ends on the 23rd.
    obs = _obs([good5(), good6()], started=datetime(2026, 11, 23, 20, 0, tzinfo=timezone.utc))
    v = _run(obs, profile)
    assert (v.evidence["today"], v.evidence["window_first"], v.evidence["window_last"]) == ("2026-11-24", FIRST, LAST)


def test_an_unpinned_key_gives_no_verdict_and_says_why(profile):
    obs = _obs([good5(), good6()])
    v = _run(obs, profile)
    assert (v.status, v.reason, v.values["unpinned"]) == (Status.INCONCLUSIVE, "kept_unpinned", f"{S6}:2222")
    assert v.evidence["sources"][1]["host_key_seen"] == SEEN_KEY
    assert v.evidence["sources"][1]["host_key_pinned"] is False
    f = _reported(obs, profile, v, f"{S6}:2222")
    assert "仅记录了服务器出示的公钥" in f.summary_zh and "recorded, not verified" in f.summary_en


def test_short_names_the_source_the_oldest_day_and_the_gaps(profile):
    short = folder(BILLING, ("2026-06-01", "2026-08-09"), ("2026-08-12", "2026-11-24"))
    obs = _obs([source(S5, short, folder(SERVER, ("2026-01-01", LAST))), good6(pinned=True)])
    v = _run(obs, profile)
    assert (v.status, v.reason, v.values["count"]) == (Status.FAIL, "short", 1)
    s5 = v.evidence["sources"][0]
    assert s5["folders"][0] == _folder_ev(BILLING, "2026-06-01", "2026-11-24",
                                          [[FIRST, "2026-05-31"], ["2026-08-10", "2026-08-11"]], 175)
    assert s5["folders"][1]["outcome"] == "pass"
    # Source level: earliest and latest record of any folder; days missing from any folder.
    assert (s5["oldest"], s5["newest"], s5["gaps"], s5["files"]) == (
        "2026-01-01", "2026-11-24", [[FIRST, "2026-05-31"], ["2026-08-10", "2026-08-11"]], 175 + 327)
    f = _reported(obs, profile, v, f"{S5}:22 {BILLING}", "2026-06-01", f"{FIRST}～2026-05-31",
                  "2026-08-10～2026-08-11")
    assert "最早记录2026-06-01" in f.summary_zh and "oldest record 2026-06-01" in f.summary_en


def test_short_with_an_unpinned_key_and_an_empty_folder(profile):
    obs = _obs([good5(), source(S6, folder(WINDOWS), port=2222, pinned=False)])
    v = _run(obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "short_unpinned")
    assert v.evidence["sources"][1]["folders"][0] == _folder_ev(
        WINDOWS, None, None, [[FIRST, LAST]], 0, listing_sha256=_sha(WINDOWS))
    f = _reported(obs, profile, v, f"{S6}:2222 {WINDOWS}", f"{FIRST}～{LAST}")
    assert "最早记录无" in f.summary_zh and "oldest record none" in f.summary_en


def test_a_failure_wins_over_an_unreadable_source(profile):
    obs = _obs([source(S5, error="auth"), source(S6, folder(WINDOWS, ("2026-07-01", LAST)), port=2222)])
    v = _run(obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "short")
    assert v.evidence["sources"][0] == {
        "address": S5, "port": 22, "username": "auditor", "host_key_seen": HOST_KEY, "host_key_pinned": False,
        "error": "auth", "error_detail": None, "oldest": None, "newest": None, "gaps": [], "files": 0,
        "listing_sha256": None, "folders": []}
    _reported(obs, profile, v, WINDOWS)


@pytest.mark.parametrize("error, zh, en", [
    ("host_key_mismatch", "主机公钥与登记的不符", "host key differs from the pinned one"),
    ("auth", "登录被拒绝", "login refused"),
    ("refused", "连接被拒绝", "connection refused"),
    ("timeout", "超时", "timed out"),
    ("unreachable", "无法访问", "unreachable"),
    ("protocol", "协议错误", "protocol error"),
    ("credentials_unreadable", "凭据文件无法读取", "credential file cannot be read"),
])
def test_an_unreadable_source_is_inconclusive_with_the_reason(profile, error, zh, en):
    obs = _obs([source(S5, error=error), good6(pinned=True)])
    v = _run(obs, profile)
    assert (v.status, v.reason, v.values["count"]) == (Status.INCONCLUSIVE, "incomplete", 1)
    s5 = v.evidence["sources"][0]
    assert (s5["error"], s5["folders"], s5["host_key_pinned"]) == (error, [], False)
    if error == "host_key_mismatch":
        assert s5["host_key_seen"] == SEEN_KEY  # the key the server showed is kept as evidence
    f = _reported(obs, profile, v, f"{S5}:22", "180")
    assert zh in f.summary_zh and en in f.summary_en


@pytest.mark.parametrize("error, zh, en", [
    ("missing", "目录不存在", "folder missing"), ("permission", "无权读取", "permission denied"),
    ("too_many", "文件过多", "too many files")])
def test_an_unreadable_folder_is_inconclusive(profile, error, zh, en):
    obs = _obs([source(S5, folder(BILLING, FULL), folder(SERVER, error=error)), good6(pinned=True)])
    v = _run(obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "incomplete")
    s5 = v.evidence["sources"][0]
    assert s5["folders"][1] == {**_folder_ev(SERVER, None, None, [], 0, listing_sha256=None, error=error,
                                             outcome="error", dated_by_name=0), "longest_gap": None}
    # The source's own keys come from the folder that could be read.
    assert (s5["oldest"], s5["files"], s5["listing_sha256"]) == (FIRST, 181, _sha(f"{BILLING}\t{_sha(BILLING)}\n"))
    f = _reported(obs, profile, v, f"{S5}:22 {SERVER}")
    assert zh in f.summary_zh and en in f.summary_en


def test_a_source_or_folder_the_run_did_not_read(profile):
    obs = _obs([source(S5, folder(BILLING, FULL)), good6()])   # no S5 server folder, and S6 unpinned
    v = _run(obs, profile)
    assert (v.status, v.reason, v.values["unpinned"]) == (Status.INCONCLUSIVE, "incomplete_unpinned", f"{S6}:2222")
    assert v.evidence["sources"][0]["folders"][1]["error"] == "not_read"
    f = _reported(obs, profile, v, f"{S5}:22 {SERVER}")
    assert "本次运行未读取该目录" in f.summary_zh and "did not list the folder" in f.summary_en
    obs = _obs([good6(pinned=True)])
    v = _run(obs, profile)
    assert (v.status, v.reason, v.evidence["sources"][0]["error"]) == (Status.INCONCLUSIVE, "incomplete", "not_read")
    f = _reported(obs, profile, v)
    assert "本次运行未读取该来源" in f.summary_zh and "did not read the source" in f.summary_en


def test_short_with_undated_files_is_inconclusive(profile):
    obs = _obs([source(S5, folder(BILLING, FULL), folder(SERVER, ("2026-09-01", LAST), undated=4)),
                good6(pinned=True)])
    v = _run(obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "incomplete")
    assert v.evidence["sources"][0]["folders"][1]["outcome"] == "undated"
    f = _reported(obs, profile, v, f"{S5}:22 {SERVER}")
    assert "4个文件无法确定日期" in f.summary_zh and "4 file(s) could not be dated" in f.summary_en


def test_not_run_and_no_sources(profile, bare):
    v = _run(_obs(None), profile)
    assert (v.status, v.reason, v.evidence["sources"]) == (Status.INCONCLUSIVE, "not_run", [])
    _reported(_obs(None), profile, v, "180")
    for logs in (None, []):
        v = _run(_obs(logs), bare)
        assert (v.status, v.reason) == (Status.INCONCLUSIVE, "no_sources")
        f = _reported(_obs(logs), bare, v, "servers.log_sources")
        assert "人工" in f.summary_zh


def test_reads_of_unregistered_sources_are_not_judged(profile):
    stray = source("198.18.6.9", folder("/tmp"))
    v = _run(_obs([stray, good6(pinned=True), good5()]), profile)
    assert (v.status, [s["address"] for s in v.evidence["sources"]]) == (Status.PASS, [S5, S6])


def test_hostile_ranges_do_not_raise(profile):
    inverted = LogFolderRead(path=BILLING, covered=[DayRange(first=D("2026-11-01"), last=D("2026-01-01")),
                                                     DayRange(first=date.max, last=date.max),
                                                     DayRange(first=date.min, last=date.min)])
    v = _run(_obs([source(S5, inverted, folder(SERVER, FULL)), good6(pinned=True)]), profile)
    billing = v.evidence["sources"][0]["folders"][0]
    assert (v.status, billing["oldest"], billing["newest"]) == (Status.FAIL, "0001-01-01", "9999-12-31")
    assert billing["gaps"] == [[FIRST, LAST]]


# ------------------------------------------------------------------ cafe-probe logs (offline folder)


def _day_files(folder: Path, first: str, last: str, skip: tuple[str, ...] = ()) -> None:
    day = D(first)
    while day <= D(last):
        if day.isoformat() not in skip:
            (folder / day.strftime("billing-%Y%m%d.log")).write_text(f"{day} 08:00:00 上机 07号机\n")
        day += timedelta(days=1)


def _logs(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from probe.cli import app

    result = CliRunner().invoke(app, ["logs", *args])
    return result.exit_code, result.stdout, result.stderr


def _listing(folder: Path) -> str:
    from probe.logdates import listing_sha256

    files = [p for p in folder.rglob("*") if p.is_file()]
    return listing_sha256((p.relative_to(folder).as_posix(), p.stat().st_size, int(p.stat().st_mtime))
                          for p in files)


PATTERN = "billing-%Y%m%d.log"


def test_logs_command_passes_the_full_window_exactly(tmp_path):
    _day_files(tmp_path, FIRST, LAST)
    code, out, _ = _logs("--path", str(tmp_path), "--name-pattern", PATTERN, "--today", "2026-11-24", "--json")
    doc = json.loads(out)
    rules = load_ruleset()
    assert code == 0
    assert doc == {"path": str(tmp_path), "name_pattern": PATTERN, "recursive": False, "timezone": "Asia/Shanghai",
                   "today": "2026-11-24", "retention_days": 180, "gap_allowance_days": 0, "window_first": FIRST,
                   "window_last": LAST, "oldest": FIRST, "newest": LAST, "gaps": [], "longest_gap": 0,
                   "missing_days": 0, "files": 180, "dated_by_name": 180, "dated_by_content": 0, "undated": 0,
                   "bytes_read": 0, "listing_sha256": _listing(tmp_path), "error": None, "error_detail": None,
                   "status": "pass", "ruleset": {"version": rules.version, "sha256": rules.sha256}}
    # The next day the window moves on by one day, and yesterday (the 24th) has no log.
    code, out, _ = _logs("--path", str(tmp_path), "--name-pattern", PATTERN, "--today", "2026-11-25", "--json")
    doc = json.loads(out)
    assert (code, doc["status"], doc["gaps"], doc["window_first"]) == (
        0, "fail", [["2026-11-24", "2026-11-24"]], "2026-05-29")


def test_logs_command_gaps_recursion_and_content_dates(tmp_path):
    _day_files(tmp_path, "2026-05-20", "2026-11-24", skip=("2026-08-10", "2026-08-11", "2026-08-12"))
    args = ("--path", str(tmp_path), "--name-pattern", PATTERN, "--today", "2026-11-24", "--json")
    code, out, _ = _logs(*args)
    doc = json.loads(out)
    assert (code, doc["status"], doc["oldest"], doc["newest"]) == (0, "fail", "2026-05-20", "2026-11-24")
    assert (doc["gaps"], doc["longest_gap"], doc["files"]) == ([["2026-08-10", "2026-08-12"]], 3, 186)
    # A rotated server log in a subfolder, dated by its first and last lines, covers the gap.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "server.log").write_text("2026-08-09 23:59:00 start\n2026/8/12 01:00 stop\n")
    code, out, _ = _logs(*args)
    assert (code, json.loads(out)["status"], json.loads(out)["files"]) == (0, "fail", 186)   # not recursive
    code, out, _ = _logs(*args, "--recursive")
    doc = json.loads(out)
    assert (code, doc["status"], doc["gaps"], doc["files"], doc["dated_by_content"]) == (0, "pass", [], 187, 1)
    assert doc["listing_sha256"] == _listing(tmp_path)


def test_logs_command_undated_files_make_a_shortfall_inconclusive(tmp_path):
    _day_files(tmp_path, "2026-07-01", LAST)
    (tmp_path / "notes.txt").write_text("no timestamps here\n")
    code, out, _ = _logs("--path", str(tmp_path), "--name-pattern", PATTERN, "--today", "2026-11-24", "--json")
    doc = json.loads(out)
    assert (code, doc["status"], doc["undated"], doc["gaps"]) == (0, "inconclusive", 1, [[FIRST, "2026-06-30"]])


def test_logs_command_table(tmp_path):
    _day_files(tmp_path, "2026-06-01", LAST, skip=("2026-09-09",))
    code, out, _ = _logs("--path", str(tmp_path), "--name-pattern", PATTERN, "--today", "2026-11-24")
    assert code == 0
    for text in ("不合格", "fail", "最早 / oldest", "2026-06-01", f"{FIRST} – 2026-05-31", "2026-09-09",
                 "清单 SHA-256", _listing(tmp_path)):
        assert text in out, text


def test_logs_command_refuses_with_one_line(tmp_path):
    cases = [
        (("--path", str(tmp_path / "absent")), "目录不存在"),
        (("--path", str(tmp_path), "--name-pattern", "billing-%Y%m.log"), "must identify a day"),
        (("--path", str(tmp_path), "--name-pattern", "billing-%Q.log"), "--name-pattern"),
        (("--path", str(tmp_path), "--today", "24/11/2026"), "YYYY-MM-DD"),
        (("--path", str(tmp_path), "--timezone", "Mars/Olympus"), "unknown time zone"),
    ]
    for args, needle in cases:
        code, out, err = _logs(*args)
        assert (code, out) == (2, ""), args
        assert len(err.strip().splitlines()) == 1 and needle in err, (args, err)


def test_table_detail_lines(profile):
    from rich.console import Console

    from probe.display import findings_table

    short = folder(BILLING, ("2026-06-01", "2026-08-09"), ("2026-08-12", "2026-11-24"))
    obs = _obs([source(S5, short, folder(SERVER, error="missing")), good6()])
    f = next(f for f in evaluate(obs, profile, load_ruleset()) if f.check_id == "LOG-RETENTION")
    console = Console(width=400, record=True)
    console.print(findings_table([f], "t"))
    text = console.export_text()
    for needle in ("今天 today 2026-11-24 (Asia/Shanghai)", f"须覆盖 required {FIRST} – {LAST}",
                   f"{S5}:22 · 公钥已核实 key pinned", f"{S6}:2222 · 公钥仅记录 key recorded only",
                   f"{BILLING}: 最早 oldest 2026-06-01 · 最新 newest 2026-11-24 · 文件 files 175 · 缺失 gaps "
                   f"{FIRST}~2026-05-31, 2026-08-10~2026-08-11", f"{SERVER}: 无法读取 unreadable (missing)"):
        assert needle in text, needle
