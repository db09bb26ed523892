"""probe/logdates.py: names, line timestamps, day ranges, the canonical listing, one folder's analysis."""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.logdates import (
    FileEntry,
    LogDateError,
    LogFormatError,
    analyse_folder,
    canonical_listing,
    date_from_line,
    date_from_name,
    fold_days,
    listing_sha256,
    load_line_formats,
    name_regex,
    read_local_folder,
)
from probe.observations import DayRange
from probe.profile import LogPath

TZ = ZoneInfo("Asia/Shanghai")
D = date.fromisoformat
FORMATS = load_line_formats()


def _line(text: str, year_hint: int | None = 2026, tz: ZoneInfo = TZ) -> date | None:
    return date_from_line(text.encode(), FORMATS, year_hint=year_hint, tz=tz)


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name, pattern, expected", [
    ("billing-20260501.log", "billing-%Y%m%d.log", "2026-05-01"),
    ("billing-20260231.log", "billing-%Y%m%d.log", None),            # no such day
    ("billing-20260501.log.gz", "billing-%Y%m%d.log", None),         # anchored at both ends
    ("xbilling-20260501.log", "billing-%Y%m%d.log", None),
    ("billing-2026051.log", "billing-%Y%m%d.log", None),             # widths are exact
    ("BILLING-20260501.LOG", "billing-%Y%m%d.log", None),            # literal text is literal
    ("app.2026-121.log", "app.%Y-%j.log", "2026-05-01"),
    ("app.2026-366.log", "app.%Y-%j.log", None),                     # 2026 is not a leap year
    ("app.2024-366.log", "app.%Y-%j.log", "2024-12-31"),
    ("pos_01May2026.txt", "pos_%d%b%Y.txt", "2026-05-01"),
    ("pos_01may2026.txt", "pos_%d%b%Y.txt", "2026-05-01"),
    ("pos_01Mai2026.txt", "pos_%d%b%Y.txt", None),
    ("log-260501-1200.txt", "log-%y%m%d-%H%M.txt", "2026-05-01"),
    ("log-990501-1200.txt", "log-%y%m%d-%H%M.txt", "1999-05-01"),
    ("100%-20260501", "100%%-%Y%m%d", "2026-05-01"),
    ("a.b-20260501", "a.b-%Y%m%d", "2026-05-01"),
    ("axb-20260501", "a.b-%Y%m%d", None),                            # '.' escaped, not "any"
    ("2026/05/01.log", "%Y/%m/%d.log", "2026-05-01"),                # '/' in pattern: the relative path
    ("sub/billing-20260501.log", "billing-%Y%m%d.log", "2026-05-01"),  # no '/': the base name
    ("2026/billing-2025-05-01", "%Y/billing-%Y-%m-%d", None),        # the same field twice must agree
    ("2026/billing-2026-05-01", "%Y/billing-%Y-%m-%d", "2026-05-01"),
    ("billing-18000101.log", "billing-%Y%m%d.log", None),            # outside 1970..2100: garbage
])
def test_date_from_name(name, pattern, expected):
    assert date_from_name(name, pattern) == (D(expected) if expected else None)


def test_name_regex_groups_and_errors():
    regex = name_regex("billing-%Y%m%d.log")
    assert regex.fullmatch("billing-20260501.log").groupdict() == {"year": "2026", "month": "05", "day": "01"}
    assert not regex.match("billing-20260501.logx")
    for bad in ("x-%Q.log", "x-%", "", "x" * 5000):
        with pytest.raises(LogDateError):
            name_regex(bad)
    with pytest.raises(LogDateError):
        date_from_name("x", "bad-%Q")


# ---------------------------------------------------------------- lines


@pytest.mark.parametrize("text, expected", [
    ("2026-05-01 12:00:00 INFO", "2026-05-01"),
    ("2026-05-01T12:00:00.123456+08:00 x", "2026-05-01"),
    ("2026-04-30T16:00:00Z x", "2026-05-01"),                # midnight in Shanghai
    ("2026-04-30T15:59:59Z x", "2026-04-30"),
    ("2026-05-01T01:00:00+09:00 x", "2026-05-01"),           # 00:00 Shanghai
    ("2026-05-01T00:30:00+09:00 x", "2026-04-30"),           # 23:30 Shanghai the day before
    ("2026-05-01 23:59:59 no offset = venue time", "2026-05-01"),
    ("2026/05/01 12:00:00 上机", "2026-05-01"),
    ("[2026/5/1 9:05] 下机", "2026-05-01"),
    ("05/01/2026 12:00:00 PM", "2026-05-01"),
    ("12/31/2025 11:59 PM", "2025-12-31"),
    ("2026年5月1日 12:00:00", "2026-05-01"),
    ("2026 年 05 月 01 日", "2026-05-01"),
    ("1.2.3.4 - - [30/Apr/2026:16:00:00 +0000] GET", "2026-05-01"),
    ("May  1 12:00:00 host x", "2026-05-01"),
    ("1777608000 ok", "2026-05-01"),
    ("2026-02-30 12:00:00 no such day", None),
    ("2026-13-01 12:00:00", None),
    ("12026-05-01 12:00:00 five-digit year", None),
    ("1899-05-01 12:00:00", None),
    ("no timestamp at all", None),
    ("", None),
    ("build 20260501 12:00", None),
])
def test_date_from_line(text, expected):
    assert _line(text) == (D(expected) if expected else None)


def test_syslog_needs_a_year_hint_and_gbk_lines_are_read():
    assert _line("May  1 12:00:00 host x", year_hint=None) is None
    assert _line("Feb 29 12:00:00 host x", year_hint=2026) is None   # 2026 has no Feb 29
    assert _line("Feb 29 12:00:00 host x", year_hint=2024) == D("2024-02-29")
    gbk = "2026年5月1日 上机".encode("gbk")
    assert date_from_line(gbk, FORMATS, year_hint=None, tz=TZ) == D("2026-05-01")


def test_line_is_bounded():
    assert _line("x" * 2000 + " 2026-05-01 12:00:00") is None  # past MAX_LINE: not read
    started = time.monotonic()
    assert date_from_line(b"9" * 10_000_000, FORMATS, year_hint=2026, tz=TZ) is None
    # The cut itself is checked by the line above, whatever the machine; this bound only catches a hang.
    assert time.monotonic() - started < 10


def test_shipped_formats_and_their_examples():
    assert [f.name for f in FORMATS] == ["iso8601", "slash_ymd", "chinese", "common_log", "windows_mdy",
                                         "syslog", "epoch_seconds"]
    syslog = next(f for f in FORMATS if f.name == "syslog")
    assert syslog.needs_year and not FORMATS[0].needs_year
    for fmt in FORMATS:
        for text, day in fmt.examples:
            assert date_from_line(text.encode(), [fmt], year_hint=2026, tz=TZ) == day


@pytest.mark.parametrize("body, needle", [
    ("formats: []", "non-empty"),
    ("formats: [{name: a, regex: '(?P<day>\\d+)', examples: [{line: '1', date: 2026-05-01}]}]", "day"),
    ("formats: [{name: a, regex: '(', examples: []}]", "formats[0] (a)"),
    ("formats: [{name: a, regex: '(?P<year>\\d{4})-(?P<month>\\d{2})-(?P<day>\\d{2})', "
     "examples: [{line: '2026-05-02', date: 2026-05-01}]}]", "reads as 2026-05-02"),
    ("formats: [{name: a, regex: '(?P<yr>\\d{4})(?P<day>\\d)(?P<month>\\d)', examples: []}]", "unknown group"),
    ("formats: [{name: a, strptime: '%Y-%m-%d', regex: 'x', examples: []}]", "exactly one"),
    ("formats: [{name: a, strptime: '%Y-%Q', examples: []}]", "%Q"),
    ("formats: [{name: a, strptime: '%Y-%m-%d', examples: [{line: '2026-05-01', date: 2026-05-01}], x: 1}]",
     "unknown key"),
    ("formats: [{name: a, strptime: '%Y-%m-%d', examples: [{line: '2026-05-01', date: 2026-05-01}]},"
     " {name: a, strptime: '%Y-%m-%d', examples: [{line: '2026-05-01', date: 2026-05-01}]}]", "duplicate"),
    ("formats: [", "log_formats"),
])
def test_bad_formats_files(tmp_path, body, needle):
    path = tmp_path / "log_formats.yaml"
    path.write_text(body)
    with pytest.raises(LogFormatError) as err:
        load_line_formats(path)
    assert needle in str(err.value)


def test_formats_file_from_the_rules_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("CAFE_PROBE_RULES", str(tmp_path))
    (tmp_path / "log_formats.yaml").write_text(
        "formats: [{name: only, strptime: '%Y.%m.%d', examples: [{line: 'at 2026.05.01', date: 2026-05-01}]}]")
    assert [f.name for f in load_line_formats()] == ["only"]
    monkeypatch.setenv("CAFE_PROBE_RULES", str(tmp_path / "nope"))
    with pytest.raises(LogFormatError):
        load_line_formats()


# ---------------------------------------------------------------- days and listings


def test_fold_days():
    days = [D("2026-01-03"), D("2026-01-01"), D("2026-01-02"), D("2026-01-02"), D("2026-01-05"),
            D("2025-12-31")]
    assert fold_days(days) == [DayRange(first=D("2025-12-31"), last=D("2026-01-03")),
                               DayRange(first=D("2026-01-05"), last=D("2026-01-05"))]
    assert fold_days([]) == []


def test_canonical_listing():
    entries = [("b.log", 10, 1_700_000_000), ("a\tb\n.log", 1, 2), ("sub/ä.log", 3, 4), ("a\\tb\n.log", 5, 6),
               ("Z.log", 0, 0)]
    text = canonical_listing(entries)
    assert text == (b"Z.log\t0\t0\n"
                    b"a\\\\tb\\n.log\t5\t6\n"
                    b"a\\tb\\n.log\t1\t2\n"
                    b"b.log\t10\t1700000000\n"
                    + "sub/ä.log\t3\t4\n".encode())
    assert listing_sha256(reversed(entries)) == hashlib.sha256(text).hexdigest()
    # a non-UTF-8 name from the file system keeps its bytes
    raw = os.fsdecode(b"\xb5\xc7\xc2\xbc.log")
    assert canonical_listing([(raw, 1, 1)]) == b"\xb5\xc7\xc2\xbc.log\t1\t1\n"


# ---------------------------------------------------------------- one folder


def _reader(files: dict[str, bytes], edge: int, calls: list[str]):
    def read_edges(rel: str) -> tuple[bytes, bytes]:
        calls.append(rel)
        data = files[rel]
        if isinstance(data, Exception):
            raise data
        return data[:edge], (b"" if len(data) <= edge else data[-edge:])
    return read_edges


def test_analyse_folder_names_then_edges():
    big = "".join(f"2026-02-{1 + i // 50:02d} 10:00:00 line {i}\n" for i in range(500)).encode()
    files = {
        "billing-20260101.log": b"ignored",
        "billing-20260102.log": b"ignored",
        "app.log": big,
        "small.log": b"header without time\n2026-01-20 08:00:00 a\n2026-01-22 08:00:00 b",
        "junk.bin": bytes(range(256)),
        "gone.log": PermissionError("denied"),
    }
    entries = [FileEntry(name, 0 if isinstance(data, Exception) else len(data), 1_777_000_000)
               for name, data in files.items()]
    calls: list[str] = []
    spec = LogPath(path="/var/log/billing", name_pattern="billing-%Y%m%d.log")
    result = analyse_folder(entries, spec, _reader(files, 1024, calls), FORMATS, TZ, edge_bytes=1024)
    assert sorted(calls) == ["app.log", "gone.log", "junk.bin", "small.log"]  # never the dated names
    assert result.ok and result.files == 6
    assert (result.dated_by_name, result.dated_by_content, result.undated) == (2, 2, 2)
    assert result.covered == [DayRange(first=D("2026-01-01"), last=D("2026-01-02")),
                              DayRange(first=D("2026-01-20"), last=D("2026-01-22")),
                              DayRange(first=D("2026-02-01"), last=D("2026-02-10"))]
    assert (result.oldest, result.newest) == (D("2026-01-01"), D("2026-02-10"))
    assert result.bytes_read == 2048 + len(files["small.log"]) + 256
    assert result.listing_sha256 == listing_sha256((e.path, e.size, e.mtime) for e in entries)


def test_analyse_folder_partial_edge_lines_are_dropped():
    # The head ends inside a dated line and the tail starts inside one: cut lines do not count.
    body = ("A" * 46 + "\n" + "2026年3月1日 上机\n" + "M" * 300 + "\n" + "Q" * 40 + " 2026年3月6日 z\n"
            + "end of file, no date\n").encode()
    entry = FileEntry("x.log", len(body), 1_777_000_000)
    edges = _reader({"x.log": body}, 64, [])
    cut = analyse_folder([entry], LogPath(path="/x"), edges, FORMATS, TZ, edge_bytes=64)
    assert cut.covered == [] and cut.undated == 1 and cut.bytes_read == 128
    whole = analyse_folder([entry], LogPath(path="/x"), _reader({"x.log": body}, 4096, []), FORMATS, TZ)
    assert whole.covered == [DayRange(first=D("2026-03-01"), last=D("2026-03-06"))]


def test_syslog_year_from_mtime_rolls_back():
    mtime = int(datetime(2026, 1, 2, 12, tzinfo=TZ).timestamp())
    files = {"messages": b"Dec 30 08:00:00 h a\nJan  1 08:00:00 h b\n"}
    result = analyse_folder([FileEntry("messages", 40, mtime)], LogPath(path="/x"), _reader(files, 4096, []),
                            FORMATS, TZ)
    assert result.covered == [DayRange(first=D("2025-12-30"), last=D("2026-01-01"))]


def test_analyse_folder_limits():
    entries = [FileEntry(f"f{i:03d}.log", 1, 1) for i in range(10)]
    calls: list[str] = []
    files = {e.path: b"2026-01-01 00:00:00 x\n" for e in entries}
    too_many = analyse_folder(entries, LogPath(path="/x"), _reader(files, 4096, calls), FORMATS, TZ, max_files=4)
    assert too_many.error == "too_many" and not too_many.ok and too_many.files == 4 and len(calls) == 4
    assert too_many.listing_sha256 == listing_sha256((e.path, 1, 1) for e in entries[:4])
    late = analyse_folder(entries, LogPath(path="/x"), _reader(files, 4096, []), FORMATS, TZ,
                          deadline=time.monotonic() - 1)
    assert late.error == "timeout" and late.dated_by_content == 0 and late.files == 10


# ---------------------------------------------------------------- offline


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest.update(f"{path}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_read_local_folder(tmp_path):
    root = tmp_path / "usb" / "logs"
    (root / "2026" / "01").mkdir(parents=True)
    for day in (1, 2, 4):
        (root / "2026" / "01" / f"pos-202601{day:02d}.log").write_text("x\n")
    (root / "app.log").write_text("2026-02-01 00:00:00 a\n2026-02-03 00:00:00 b\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pos-20250101.log").write_text("x\n")
    (root / "escape").symlink_to(outside)                  # a folder link leading out: not followed
    (root / "pos-20250102.log").symlink_to(outside / "pos-20250101.log")
    os.mkfifo(root / "fifo")                               # never opened (not a regular file)
    before = _tree_hash(tmp_path)
    flat = read_local_folder(root, LogPath(path=str(root), name_pattern="pos-%Y%m%d.log"), FORMATS, TZ)
    deep = read_local_folder(root, LogPath(path=str(root), name_pattern="pos-%Y%m%d.log", recursive=True),
                             FORMATS, TZ)
    assert flat.ok and flat.files == 1 and flat.covered == [DayRange(first=D("2026-02-01"), last=D("2026-02-03"))]
    assert deep.ok and deep.files == 4 and deep.dated_by_name == 3
    assert deep.covered == [DayRange(first=D("2026-01-01"), last=D("2026-01-02")),
                            DayRange(first=D("2026-01-04"), last=D("2026-01-04")),
                            DayRange(first=D("2026-02-01"), last=D("2026-02-03"))]
    expected = sorted((str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime))
                      for p in root.rglob("*.log") if not p.is_symlink())
    assert deep.listing_sha256 == listing_sha256(expected)
    assert _tree_hash(tmp_path) == before
    missing = read_local_folder(tmp_path / "nope", LogPath(path="/nope"), FORMATS, TZ)
    assert not missing.ok and missing.error == "missing"
    one = read_local_folder(root / "app.log", LogPath(path="app.log"), FORMATS, TZ)
    assert one.ok and one.files == 1 and one.oldest == D("2026-02-01")
    fifo = read_local_folder(root / "fifo", LogPath(path="fifo"), FORMATS, TZ)
    assert fifo.error == "not_a_folder"


# ---------------------------------------------------------------- fuzz

_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
_PATTERN = st.lists(st.sampled_from(["%Y", "%m", "%d", "%j", "%y", "%H", "%M", "%S", "%b", "%B", "%a", "%%",
                                     "-", ".", "_", "/", "log", "(", "[", "*", "年", "\\"]), max_size=10)


@settings(max_examples=400, deadline=None)
@given(name=st.text(_ALPHABET, max_size=80), parts=_PATTERN)
def test_fuzz_date_from_name(name, parts):
    pattern = "".join(parts) or "x"
    try:
        regex = name_regex(pattern)
        got = date_from_name(name, pattern)
    except LogDateError:
        return
    assert isinstance(regex, re.Pattern)
    assert got is None or (isinstance(got, date) and 1970 <= got.year <= 2100)


@settings(max_examples=300, deadline=None)
@given(day=st.dates(min_value=date(1970, 1, 1), max_value=date(2100, 12, 31)),
       pattern=st.sampled_from(["billing-%Y%m%d.log", "%Y/%m/%d.log", "a_%d%b%Y", "x.%Y-%j", "%Y%m%d%H%M%S",
                                "%y%m%d", "%A-%d-%B-%Y"]))
def test_fuzz_names_round_trip(day, pattern):
    name = datetime(day.year, day.month, day.day, 13, 14, 15).strftime(pattern)
    expected = day
    if "%y" in pattern:  # two-digit years: 69-99 are 19xx, 00-68 are 20xx (POSIX), 1969 is out of range
        two = day.year % 100
        expected = day.replace(year=1900 + two if two >= 69 else 2000 + two) if two != 69 else None
    assert date_from_name(name, pattern) == expected


@settings(max_examples=500, deadline=None)
@given(line=st.binary(max_size=300), hint=st.one_of(st.none(), st.integers(-10**6, 10**6)),
       zone=st.sampled_from(["Asia/Shanghai", "UTC", "Pacific/Kiritimati", "America/Adak"]))
def test_fuzz_date_from_line_bytes(line, hint, zone):
    got = date_from_line(line, FORMATS, year_hint=hint, tz=ZoneInfo(zone))
    assert got is None or (isinstance(got, date) and 1969 <= got.year <= 2101)


_PIECES = st.sampled_from(["2026", "-", "05", "01", " ", "T", ":", "12", "00", "+08:00", "Z", "/", "年", "月",
                           "日", "May", "Dec", "  ", "[", "]", "+0800", "-1200", "99", "9999999999", "1777608000",
                           "\x00", "\xff", "\n", "31", "02", "29", "60", "24"])


@settings(max_examples=800, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=30), hint=st.one_of(st.none(), st.integers(1960, 2110)))
def test_fuzz_timestamp_shaped_garbage(pieces, hint):
    line = "".join(pieces).encode("utf-8", "surrogatepass")
    got = date_from_line(line, FORMATS, year_hint=hint, tz=TZ)
    assert got is None or 1969 <= got.year <= 2101


@settings(max_examples=200, deadline=None)
@given(head=st.binary(max_size=600), tail=st.binary(max_size=600), size=st.integers(0, 10**12),
       mtime=st.integers(-2**40, 2**40))
def test_fuzz_analyse_folder(head, tail, size, mtime):
    result = analyse_folder([FileEntry("f", size, mtime)], LogPath(path="/x"), lambda _: (head, tail), FORMATS, TZ,
                            edge_bytes=512)
    assert result.files == 1 and result.dated_by_content + result.undated == 1
    assert result.bytes_read == min(len(head), 512) + min(len(tail), 512)
    if result.covered:
        assert result.oldest <= result.newest and result.newest - result.oldest < timedelta(days=50_000)
