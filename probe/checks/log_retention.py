"""LOG-RETENTION 服务器、计费日志保存180天以上 — every registered log folder covers the retention window.

Why: seed 000 二(四)4③ 查看网吧服务器、计费系统电脑日志是否保存180天以上; the
network-log duty of the 网络安全法 (2016 Art. 21(三), from 2026-01-01 Art. 23:
at least six months) and the police check of logging measures (公安部令第151号
Art. 10(三), from 2026-10-01 第176号).

How: the run lists each ``servers.log_sources`` folder read-only (SFTP) and
records the days its files cover (``Observations.logs``); this module only
judges those days. "Today" is the day the run started in the venue's time
zone (``run.started_at`` in ``run.timezone``). The window is the
``retention_days`` full days before today, ``[today - retention_days,
today - 1]``: today's log may still be open (or not yet written), so today
is neither required nor a gap, though a record of today counts as the
newest. A *gap* is any run of days inside the window with no record,
including the days before the oldest and after the newest record.

A folder meets the rule when its oldest record is on or before the window's
first day and no gap is longer than ``gap_allowance_days``. Each registered
folder is judged on its own (billing and server logs are each required).

Per source, the evidence also carries the DESIGN.md §5 keys: ``oldest`` and
``newest`` are the earliest and latest record of any of its readable
folders, ``gaps`` the days missing from at least one of them (so a source
never looks complete while one of its folders is not), ``files`` the sum,
and ``listing_sha256`` the SHA-256 over one line ``<path> TAB <folder
listing SHA-256> LF`` per listed folder, in profile order.

Fails when any readable folder falls short (the summary names the source,
the folder, its oldest day and its gaps). Otherwise inconclusive when a
source could not be read (host key mismatch, authentication, refused,
timeout, …), a folder could not be listed, or a folder falls short while
some of its files could not be dated (they may hold the missing days).
Inconclusive too when the logs were not read, or the profile registers no
log source (the officers look by hand). A source read without a pinned
host key is judged all the same; the summary says its key was only
recorded, not verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from probe.checks.context import CheckContext, listing
from probe.findings import Status, Verdict
from probe.observations import DayRange, LogFolderRead, LogSourceRead
from probe.profile import LogSource

__all__ = ["CHECK_ID", "FOLDER_ERRORS", "Coverage", "Outcome", "check", "coverage", "folder_outcome", "run_today"]

CHECK_ID = "LOG-RETENTION"

SUMMARY_MAX = 5  # sources, folders or gaps named in one summary; the evidence lists all

Outcome = Literal["pass", "fail", "undated", "error"]


@dataclass(frozen=True)
class Coverage:
    """How a set of covered days meets the retention window ending yesterday (see the module docstring)."""

    window_first: date
    window_last: date
    oldest: date | None
    newest: date | None
    gaps: list[DayRange]
    longest_gap: int
    missing_days: int
    meets: bool


def _merge(ranges: Iterable[DayRange]) -> list[tuple[int, int]]:
    """Day ranges as sorted, disjoint (first, last) ordinals; touching ranges join, inverted ones are dropped."""
    spans = sorted((r.first.toordinal(), r.last.toordinal()) for r in ranges if r.first <= r.last)
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _missing(spans: list[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The runs of days in [first, last] (ordinals) that no span covers."""
    gaps, cursor = [], first
    for a, b in spans:
        if cursor > last or a > last:
            break
        if b < cursor:
            continue
        if a > cursor:
            gaps.append((cursor, a - 1))
        cursor = b + 1
    if cursor <= last:
        gaps.append((cursor, last))
    return gaps


def _ranges(spans: list[tuple[int, int]]) -> list[DayRange]:
    return [DayRange(first=date.fromordinal(a), last=date.fromordinal(b)) for a, b in spans]


def coverage(covered: list[DayRange], today: date, retention_days: int, gap_allowance_days: int) -> Coverage:
    """Judge the days ``covered`` against the window ``[today - retention_days, today - 1]``.

    ``gaps`` are all runs of uncovered days inside the window (leading and
    trailing ones included); ``meets`` needs the oldest record on or before
    the window's first day and no gap longer than ``gap_allowance_days``.
    Covered days after today or before the window count for oldest/newest
    only; today itself is never required. ``retention_days`` 0 gives an
    empty window (first day today, last day yesterday) that only needs a
    record. Raises ValueError on a negative threshold.
    """
    if retention_days < 0 or gap_allowance_days < 0:
        raise ValueError("retention_days and gap_allowance_days must not be negative")
    spans = _merge(covered)
    first = max(1, today.toordinal() - retention_days)  # ordinals: no overflow near date.min
    last = today.toordinal() - 1
    gaps = _missing(spans, first, last)
    lengths = [b - a + 1 for a, b in gaps]
    oldest = date.fromordinal(spans[0][0]) if spans else None
    longest = max(lengths, default=0)
    return Coverage(
        window_first=date.fromordinal(first), window_last=date.fromordinal(max(1, last)),
        oldest=oldest, newest=date.fromordinal(spans[-1][1]) if spans else None, gaps=_ranges(gaps),
        longest_gap=longest, missing_days=sum(lengths),
        meets=oldest is not None and oldest.toordinal() <= first and longest <= gap_allowance_days)


def folder_outcome(read: LogFolderRead, cov: Coverage | None) -> Outcome:
    """One folder's verdict: unreadable, short but with undated files (they may hold the missing days), or not."""
    if cov is None or not read.ok or read.error is not None:
        return "error"
    if cov.meets:
        return "pass"
    return "undated" if read.undated else "fail"


def run_today(ctx: CheckContext) -> tuple[date, str]:
    """The day the run started in the venue's time zone, and that zone's name."""
    run = ctx.observations.run
    try:
        return run.started_at.astimezone(ZoneInfo(run.timezone)).date(), run.timezone
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        # A saved file with an unknown zone name: started_at still carries the venue's offset.
        return run.started_at.date(), run.timezone


class _Words:
    """A summary value in both languages: ``{name:zh}`` and ``{name:en}`` in the catalogue's templates."""

    def __init__(self, zh: list[str], en: list[str]) -> None:
        self.zh, self.en = listing(zh, SUMMARY_MAX), listing(en, SUMMARY_MAX)

    def __format__(self, spec: str) -> str:
        return self.en if spec == "en" else self.zh


_SOURCE_ERRORS = {
    "host_key_mismatch": ("服务器主机公钥与登记的不符（已记录所见公钥）", "the host key differs from the pinned one (the key seen is recorded)"),
    "auth": ("登录被拒绝（用户名、密码或密钥错误）", "login refused (wrong user name, password or key)"),
    "refused": ("连接被拒绝（SSH服务未开启）", "connection refused (no SSH service)"),
    "timeout": ("连接或读取超时", "connection or listing timed out"),
    "unreachable": ("服务器无法访问", "server unreachable"),
    "protocol": ("SSH/SFTP协议错误", "SSH/SFTP protocol error"),
    "credentials_unreadable": ("场所信息中的登录凭据文件无法读取", "the profile's credential file cannot be read"),
    "not_read": ("本次运行未读取该来源", "this run did not read the source"),
    "cancelled": ("运行中断，读取未完成", "the run was interrupted while the source was read"),
}
FOLDER_ERRORS = {  # (zh, en) words for LogFolderRead.error, also used by `cafe-probe logs`
    "missing": ("目录不存在", "folder missing"),
    "not_a_folder": ("不是目录", "not a folder"),
    "permission": ("无权读取", "permission denied"),
    "too_many": ("文件过多，超出读取上限", "too many files to list"),
    "timeout": ("读取超时", "listing timed out"),
    "io": ("读取出错", "read error"),
    "not_read": ("本次运行未读取该目录", "this run did not list the folder"),
}


def _day(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _pairs(ranges: list[DayRange]) -> list[list[str]]:
    return [[r.first.isoformat(), r.last.isoformat()] for r in ranges]


def _folder_row(path: str, read: LogFolderRead | None, today: date,
                th: dict[str, int]) -> tuple[dict[str, Any], list[DayRange]]:
    """One registered folder as the evidence shows it (outcome included), and the days it covers when readable."""
    error = "not_read" if read is None else read.error or (None if read.ok else "io")
    cov = None if error or read is None else coverage(read.covered, today, th["retention_days"],
                                                       th["gap_allowance_days"])
    row = {"path": path, "name_pattern": read.name_pattern if read else None,
           "recursive": read.recursive if read else None,
           "oldest": _day(cov.oldest) if cov else None, "newest": _day(cov.newest) if cov else None,
           "gaps": _pairs(cov.gaps) if cov else [], "longest_gap": cov.longest_gap if cov else None,
           "files": read.files if read else 0, "dated_by_name": read.dated_by_name if read else 0,
           "dated_by_content": read.dated_by_content if read else 0, "undated": read.undated if read else 0,
           "listing_sha256": read.listing_sha256 if read else None, "error": error,
           "error_detail": read.error_detail if read else None,
           "outcome": folder_outcome(read, cov) if read else "error"}
    return row, (read.covered if cov and read else [])


def _source_row(spec: LogSource, read: LogSourceRead | None, today: date, th: dict[str, int]) -> dict[str, Any]:
    """One registered source: its connection, its folders, and the §5 keys merged over its readable folders."""
    error = "not_read" if read is None else read.error or (None if read.ok else "protocol")
    by_path = {f.path: f for f in (read.folders if read else [])}
    done = [] if error else [_folder_row(p.path, by_path.get(p.path), today, th) for p in spec.paths]
    folders = [row for row, _ in done]
    readable = [row for row in folders if not row["error"]]
    merged = coverage([r for _, covered in done for r in covered], today, th["retention_days"], 0)
    gap_days = [DayRange(first=date.fromisoformat(a), last=date.fromisoformat(b))
                for row in readable for a, b in row["gaps"]]
    digests = "".join(f"{row['path']}\t{row['listing_sha256']}\n" for row in folders if row["listing_sha256"])
    return {"address": str(spec.address), "port": spec.port, "username": spec.username,
            "host_key_seen": read.host_key_seen if read else None,
            "host_key_pinned": bool(read and read.host_key_pinned), "error": error,
            "error_detail": read.error_detail if read else None,
            "oldest": _day(merged.oldest), "newest": _day(merged.newest),
            "gaps": _pairs(_ranges(_merge(gap_days))), "files": sum(row["files"] for row in readable),
            "listing_sha256": hashlib.sha256(digests.encode()).hexdigest() if digests else None,
            "folders": folders}


def _pair_reads(sources: list[LogSource], reads: list[LogSourceRead]) -> list[LogSourceRead | None]:
    """Each registered source's read, by address and port (in order, should the profile list one twice)."""
    pool = list(reads)
    paired = []
    for spec in sources:
        hit = next((r for r in pool if r.address == spec.address and r.port == spec.port), None)
        if hit is not None:
            pool.remove(hit)
        paired.append(hit)
    return paired


def _label(source: dict[str, Any]) -> str:
    return f"{source['address']}:{source['port']}"


def _short_words(rows: list[tuple[dict, dict]]) -> _Words:
    zh, en = [], []
    for source, folder in rows:
        gaps = [f"{a}～{b}" if a != b else a for a, b in folder["gaps"]]
        zh.append(f"{_label(source)} {folder['path']}（最早记录{folder['oldest'] or '无'}；缺失"
                  f"{listing(gaps, SUMMARY_MAX) if gaps else '无'}）")
        en.append(f"{_label(source)} {folder['path']} (oldest record {folder['oldest'] or 'none'}; missing "
                  f"{listing(gaps, SUMMARY_MAX) if gaps else 'none'})")
    return _Words(zh, en)


def _problem_words(sources: list[dict[str, Any]]) -> tuple[int, _Words]:
    zh, en = [], []
    for s in sources:
        if s["error"]:
            words = _SOURCE_ERRORS.get(s["error"], (s["error"], s["error"]))
            zh.append(f"{_label(s)}：{words[0]}")
            en.append(f"{_label(s)}: {words[1]}")
        for f in s["folders"]:
            if f["outcome"] == "error":
                words = FOLDER_ERRORS.get(f["error"], (f["error"], f["error"]))
                zh.append(f"{_label(s)} {f['path']}：{words[0]}")
                en.append(f"{_label(s)} {f['path']}: {words[1]}")
            elif f["outcome"] == "undated":
                zh.append(f"{_label(s)} {f['path']}：已识别日期的记录不满足要求，另有{f['undated']}个文件无法确定日期")
                en.append(f"{_label(s)} {f['path']}: the dated records fall short and {f['undated']} "
                          "file(s) could not be dated")
    return len(zh), _Words(zh, en)


def check(ctx: CheckContext) -> Verdict:
    """Judge every registered log folder's covered days against the retention window."""
    th = {k: int(ctx.thresholds[k]) for k in ("retention_days", "gap_allowance_days")}
    today, zone = run_today(ctx)
    window = coverage([], today, th["retention_days"], th["gap_allowance_days"])
    specs, reads = ctx.profile.servers.log_sources, ctx.observations.logs
    sources = [] if reads is None else [_source_row(s, r, today, th) for s, r in zip(specs, _pair_reads(specs, reads))]
    evidence = {"today": today.isoformat(), "timezone": zone, **th,
                "window_first": window.window_first.isoformat(), "window_last": window.window_last.isoformat(),
                "sources": sources, "observations": ["logs"]}
    values: dict[str, Any] = {"retention_days": th["retention_days"], "today": today.isoformat(),
                              "window_first": window.window_first.isoformat(),
                              "window_last": window.window_last.isoformat(), "sources": len(specs)}
    if not specs:
        return Verdict(status=Status.INCONCLUSIVE, reason="no_sources", evidence=evidence, values=values)
    if reads is None:
        return Verdict(status=Status.INCONCLUSIVE, reason="not_run", evidence=evidence, values=values)
    unpinned = [_label(s) for s in sources if not s["error"] and not s["host_key_pinned"]]
    suffix = "_unpinned" if unpinned else ""
    values["unpinned"] = listing(unpinned, SUMMARY_MAX)
    folders = [(s, f) for s in sources for f in s["folders"]]
    short = [(s, f) for s, f in folders if f["outcome"] == "fail"]
    if short:
        values.update(count=len(short), failures=_short_words(short))
        # An unpinned server's identity is not proven (DESIGN.md §6): what it showed cannot carry a verdict.
        return Verdict(status=Status.INCONCLUSIVE if unpinned else Status.FAIL, reason="short" + suffix,
                       evidence=evidence, values=values)
    count, problems = _problem_words(sources)
    if count:
        values.update(count=count, problems=problems)
        return Verdict(status=Status.INCONCLUSIVE, reason="incomplete" + suffix, evidence=evidence, values=values)
    values["folders"] = len(folders)
    return Verdict(status=Status.INCONCLUSIVE if unpinned else Status.PASS, reason="kept" + suffix,
                   evidence=evidence, values=values)
