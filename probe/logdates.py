"""Which days a log folder covers: dates from file names and from first/last lines. Pure.

Shared by the SSH reader (:mod:`probe.net.ssh`) and the offline reader
(:func:`read_local_folder`, for logs copied onto a USB stick), so both give
the same :class:`~probe.observations.LogFolderRead` for the same files.

* File names: a strftime-style pattern (``billing-%Y%m%d.log``) becomes an
  anchored regex (:func:`name_regex`); a pattern with ``/`` is matched against
  the path relative to the folder, otherwise against the base name.
* Line timestamps: formats are data (``rules/log_formats.yaml``); each is a
  regex with named groups or a strptime format, checked against its own
  examples when loaded. A file whose name carries no date is dated from its
  first and last dated complete lines within its first and last
  ``edge_bytes``; it covers every day between the two.
* A syslog line has no year: the year comes from the file's mtime (in the
  venue's zone), one year earlier if that would put the line after the mtime
  (a December line in a file written in January).
* Evidence: :func:`canonical_listing` (one line per file: path, size, mtime)
  and its SHA-256.

Hostile names and lines never raise: they give ``None``. Only a bad pattern
or a bad formats file raises, and only :class:`LogDateError`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import yaml

from probe.observations import DayRange, LogFolderRead
from probe.profile import LogPath

__all__ = [
    "FORMATS_FILE",
    "FileEntry",
    "LineFormat",
    "LogDateError",
    "LogFormatError",
    "analyse_folder",
    "canonical_listing",
    "date_from_line",
    "date_from_name",
    "fold_days",
    "listing_sha256",
    "load_line_formats",
    "name_regex",
    "read_local_folder",
]

FORMATS_FILE = "log_formats.yaml"
MAX_NAME = 1024          # longer names are not log names; never matched
MAX_LINE = 1024          # a timestamp sits near the start; the rest of a line is not read
MIN_YEAR, MAX_YEAR = 1970, 2100  # outside: garbage, not a log record
EXAMPLE_ZONE = ZoneInfo("Asia/Shanghai")  # the zone examples in the formats file are read in
EXAMPLE_YEAR = 2026                       # the year hint for examples without a year

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FULL_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")
# Group names a format may use; anything else in a regex is refused at load time.
_GROUPS = {"year", "year2", "month", "mon", "day", "yday", "hour", "minute", "second", "offset", "epoch"}

# strftime directive -> (group name or None, regex). strftime pads numbers, so widths are exact:
# that keeps '%Y%m%d' unambiguous.
_DIRECTIVES: dict[str, tuple[str | None, str]] = {
    "Y": ("year", r"\d{4}"),
    "y": ("year2", r"\d{2}"),
    "m": ("month", r"\d{2}"),
    "d": ("day", r"\d{2}"),
    "j": ("yday", r"\d{3}"),
    "H": ("hour", r"\d{2}"),
    "M": ("minute", r"\d{2}"),
    "S": ("second", r"\d{2}"),
    "b": ("mon", r"[A-Za-z]{3}"),
    "B": ("mon", r"[A-Za-z]{3,9}"),
    "a": (None, r"[A-Za-z]{3}"),
    "A": (None, r"[A-Za-z]{6,9}"),
    "z": ("offset", r"Z|[+-]\d{2}(?::?\d{2})?"),
}


class LogDateError(Exception):
    """A name pattern or a line-formats file this module cannot use (never raised for names or lines)."""


class LogFormatError(LogDateError):
    """The line-formats file is unusable; the message names the file and the entry."""


@dataclass(frozen=True)
class LineFormat:
    """One way a log line carries its time: a compiled regex with named groups."""

    name: str
    regex: re.Pattern[str]
    source: Literal["regex", "strptime"]
    examples: tuple[tuple[str, date], ...]

    @property
    def needs_year(self) -> bool:
        """True when lines of this format carry no year (syslog): it comes from the file's mtime."""
        groups = self.regex.groupindex
        return "epoch" not in groups and "year" not in groups and "year2" not in groups


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a folder: path relative to the folder ('/'-separated), size, mtime (epoch s)."""

    path: str
    size: int
    mtime: int


# ---------------------------------------------------------------- names


def _pattern_regex(pattern: str) -> str:
    """Regex text for a strftime-style pattern: literal text escaped, repeated fields back-referenced."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "%":
            out.append(re.escape(ch))
            i += 1
            continue
        if i + 1 >= len(pattern):
            raise LogDateError("模式以单独的 % 结尾 / the pattern ends with a lone %")
        code = pattern[i + 1]
        i += 2
        if code == "%":
            out.append("%")
            continue
        if code not in _DIRECTIVES:
            raise LogDateError(f"不支持的格式符 %{code} / unsupported directive %{code} "
                               f"(supported: {' '.join('%' + c for c in _DIRECTIVES)} %%)")
        group, text = _DIRECTIVES[code]
        if group is None:
            out.append(f"(?:{text})")
        elif group in seen:
            # The same field twice (e.g. %Y/%Y%m%d) must hold the same value.
            out.append(f"(?P={group})")
        else:
            seen.add(group)
            out.append(f"(?P<{group}>{text})")
    return "".join(out)


@lru_cache(maxsize=256)
def name_regex(pattern: str) -> re.Pattern[str]:
    """The anchored regex for a strftime-style file-name pattern.

    Supported: ``%Y %y %m %d %j %H %M %S %b %B %a %A %z %%``; everything else
    is literal text. Named groups: year, year2, month, mon, day, yday, hour,
    minute, second, offset. LogDateError for other directives.
    """
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_NAME:
        raise LogDateError("模式必须是非空字符串 / the pattern must be a non-empty string")
    try:
        return re.compile(r"\A" + _pattern_regex(pattern) + r"\Z")
    except re.error as exc:  # cannot happen with escaped text, but never let it out
        raise LogDateError(f"模式无法编译 / the pattern does not compile: {exc}") from None


def date_from_name(name: str, pattern: str) -> date | None:
    """The day a file name carries by ``pattern``; None when it does not match or is no real day.

    A pattern containing '/' is matched against the whole (relative) name,
    otherwise against its last component. LogDateError only for a bad pattern.
    """
    regex = name_regex(pattern)
    if not isinstance(name, str) or len(name) > MAX_NAME:
        return None
    target = name if "/" in pattern else name.rsplit("/", 1)[-1]
    match = regex.match(target)
    if match is None:
        return None
    return _date_of(match.groupdict(), year_hint=None, tz=None)


# ---------------------------------------------------------------- fields -> date


def _year(groups: dict[str, str | None], year_hint: int | None) -> int | None:
    if groups.get("year"):
        return int(groups["year"])
    if groups.get("year2"):
        # POSIX strptime: 69-99 are 19xx, 00-68 are 20xx.
        two = int(groups["year2"])
        return 1900 + two if two >= 69 else 2000 + two
    return year_hint


def _month(groups: dict[str, str | None]) -> int | None:
    if groups.get("month"):
        return int(groups["month"])
    name = (groups.get("mon") or "").lower()
    if name in _MONTHS:
        return _MONTHS.index(name) + 1
    if name in _FULL_MONTHS:
        return _FULL_MONTHS.index(name) + 1
    return None


def _offset(text: str) -> timezone | None:
    if text in ("Z", "z"):
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _date_of(groups: dict[str, str | None], *, year_hint: int | None, tz: ZoneInfo | None) -> date | None:
    """A date from a match's named groups, converted to ``tz`` when the time carries an offset."""
    try:
        if groups.get("epoch"):
            moment = datetime.fromtimestamp(int(groups["epoch"]), tz or timezone.utc)
            day = moment.date()
        else:
            year = _year(groups, year_hint)
            if year is None:
                return None
            if groups.get("yday"):
                day = date(year, 1, 1) + timedelta(days=int(groups["yday"]) - 1)
                if day.year != year:
                    return None
            else:
                month = _month(groups)
                if month is None or not groups.get("day"):
                    return None
                day = date(year, month, int(groups["day"]))
            offset = _offset(groups["offset"]) if groups.get("offset") else None
            if offset is not None and tz is not None:
                clock = [int(groups.get(k) or 0) for k in ("hour", "minute", "second")]
                if clock[0] > 23 or clock[1] > 59 or clock[2] > 60:
                    return None
                moment = datetime(day.year, day.month, day.day, clock[0], clock[1], min(clock[2], 59),
                                  tzinfo=offset)
                day = moment.astimezone(tz).date()
    except (ValueError, OverflowError, OSError):
        return None  # no such day (Feb 30, day 366 of a common year), or out of range
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        return None
    return day


# ---------------------------------------------------------------- line formats


def _decode(line: bytes) -> str:
    # Chinese Windows software often writes GBK; gb18030 is its superset.
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("gb18030", errors="replace")


def _match_line(line: bytes, formats: Iterable[LineFormat], *, year_hint: int | None,
                tz: ZoneInfo) -> tuple[date, bool] | None:
    """(day, year assumed) for the first format that yields a day, or None."""
    if not isinstance(line, (bytes, bytearray)):
        return None
    text = _decode(bytes(line[:MAX_LINE]))
    for fmt in formats:
        match = fmt.regex.search(text)
        if match is None:
            continue
        day = _date_of(match.groupdict(), year_hint=year_hint, tz=tz)
        if day is not None:
            return day, fmt.needs_year
    return None


def date_from_line(line: bytes, formats: Iterable[LineFormat], *, year_hint: int | None,
                   tz: ZoneInfo) -> date | None:
    """The day of one log line by the first format (in file order) that yields a real day.

    Times with a UTC offset (or epoch seconds) are converted to ``tz``; times
    without one are taken as the venue's local time. ``year_hint`` is used
    only by formats without a year (syslog). Only the first MAX_LINE bytes
    are read. Garbage gives None.
    """
    found = _match_line(line, formats, year_hint=year_hint, tz=tz)
    return found[0] if found else None


def _rules_file() -> Path:
    # The same lookup as the ruleset ($CAFE_PROBE_RULES, else the shipped package), so a run
    # reads the formats from the directory whose digest its report carries.
    from probe.rules import RulesError, rules_directory

    try:
        return rules_directory(None) / FORMATS_FILE
    except RulesError as exc:
        raise LogFormatError(str(exc)) from None


def _compile_entry(index: int, entry: object) -> LineFormat:
    where = f"formats[{index}]"
    if not isinstance(entry, dict):
        raise LogFormatError(f"{where}: must be a mapping")
    unknown = set(entry) - {"name", "description", "regex", "strptime", "examples"}
    if unknown:
        raise LogFormatError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = entry.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise LogFormatError(f"{where}: name must be lower_snake_case text")
    where = f"formats[{index}] ({name})"
    regex_text, strptime_text = entry.get("regex"), entry.get("strptime")
    if (regex_text is None) == (strptime_text is None):
        raise LogFormatError(f"{where}: give exactly one of regex and strptime")
    try:
        if strptime_text is not None:
            if not isinstance(strptime_text, str) or not strptime_text:
                raise LogFormatError(f"{where}: strptime must be text")
            regex = re.compile(_pattern_regex(strptime_text))
        else:
            if not isinstance(regex_text, str) or not regex_text or len(regex_text) > 2000:
                raise LogFormatError(f"{where}: regex must be text (at most 2000 characters)")
            regex = re.compile(regex_text)
    except (re.error, LogDateError) as exc:
        raise LogFormatError(f"{where}: {exc}") from None
    groups = set(regex.groupindex)
    if groups - _GROUPS:
        raise LogFormatError(f"{where}: unknown group(s) {', '.join(sorted(groups - _GROUPS))}; "
                             f"use {', '.join(sorted(_GROUPS))}")
    if "epoch" not in groups and not ({"day", "yday"} & groups and ({"month", "mon", "yday"} & groups)):
        raise LogFormatError(f"{where}: needs groups for a day (day with month or mon, or yday) or epoch")
    fmt = LineFormat(name=name, regex=regex, source="strptime" if strptime_text else "regex", examples=())
    examples = entry.get("examples")
    if not isinstance(examples, list) or not examples:
        raise LogFormatError(f"{where}: needs examples: [{{line: ..., date: YYYY-MM-DD}}]")
    checked = []
    for example in examples:
        if not isinstance(example, dict) or set(example) != {"line", "date"} \
                or not isinstance(example["line"], str) or not isinstance(example["date"], date):
            raise LogFormatError(f"{where}: each example is {{line: text, date: YYYY-MM-DD}}")
        # Each format must read its own examples, alone and first in line: a format that does not
        # is a typo that would silently date nothing.
        got = date_from_line(example["line"].encode(), [fmt], year_hint=EXAMPLE_YEAR, tz=EXAMPLE_ZONE)
        if got != example["date"]:
            raise LogFormatError(f"{where}: example {example['line']!r} reads as {got}, "
                                 f"not {example['date']} (examples are read in {EXAMPLE_ZONE.key}, "
                                 f"year {EXAMPLE_YEAR} when the line has none)")
        checked.append((example["line"], example["date"]))
    return LineFormat(name=name, regex=regex, source=fmt.source, examples=tuple(checked))


def load_line_formats(path: Path | None = None) -> list[LineFormat]:
    """Line-timestamp formats from a YAML file (default: ``log_formats.yaml`` in the rules directory).

    Every entry is checked, including that it reads each of its examples to
    the stated day. LogFormatError naming the file and entry otherwise.
    """
    file = Path(path) if path is not None else _rules_file()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LogFormatError(f"{file}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("formats"), list) or not data["formats"]:
        raise LogFormatError(f"{file}: needs a non-empty list 'formats'")
    unknown = set(data) - {"version", "formats"}
    if unknown:
        raise LogFormatError(f"{file}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    try:
        formats = [_compile_entry(i, entry) for i, entry in enumerate(data["formats"])]
    except LogFormatError as exc:
        raise LogFormatError(f"{file}: {exc}") from None
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise LogFormatError(f"{file}: duplicate format names")
    return formats


# ---------------------------------------------------------------- days and listings


def _merge(ranges: Iterable[tuple[date, date]]) -> list[DayRange]:
    """Sorted ranges with overlapping and adjacent ones merged."""
    merged: list[list[date]] = []
    for first, last in sorted((min(a, b), max(a, b)) for a, b in ranges):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [DayRange(first=a, last=b) for a, b in merged]


def fold_days(days: Iterable[date]) -> list[DayRange]:
    """Days as sorted ranges of consecutive days (duplicates allowed)."""
    return _merge((d, d) for d in days)


def _escape(name: str) -> bytes:
    # Backslash first, so an escaped tab cannot be confused with a name holding '\t' literally.
    text = name.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    try:
        # surrogateescape gives back the bytes of a non-UTF-8 name exactly as the file system has them.
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def canonical_listing(entries: Iterable[tuple[str, int, int]]) -> bytes:
    """The evidence listing: ``path<TAB>size<TAB>mtime\\n`` per file, sorted bytewise by escaped path.

    Paths are relative with '/'; backslash, tab, newline and CR in a name are
    written as ``\\\\ \\t \\n \\r``; mtime is whole epoch seconds.
    """
    lines = sorted((_escape(path), int(size), int(mtime)) for path, size, mtime in entries)
    return b"".join(b"%s\t%d\t%d\n" % line for line in lines)


def listing_sha256(entries: Iterable[tuple[str, int, int]]) -> str:
    """Hex SHA-256 of :func:`canonical_listing`."""
    return hashlib.sha256(canonical_listing(entries)).hexdigest()


# ---------------------------------------------------------------- one folder


def _lines(data: bytes, *, drop_first: bool, drop_last: bool) -> list[bytes]:
    """Complete lines of a chunk: a chunk cut out of a larger file loses its partial ends."""
    parts = data.split(b"\n")
    if drop_first:
        parts = parts[1:]
    if drop_last:
        parts = parts[:-1]
    return [p.rstrip(b"\r") for p in parts if p.strip()]


def _mtime_day(mtime: int, tz: ZoneInfo) -> date | None:
    try:
        day = datetime.fromtimestamp(mtime, tz).date()
    except (ValueError, OverflowError, OSError):
        return None
    return day if MIN_YEAR <= day.year <= MAX_YEAR else None


def _dated(lines: Iterable[bytes], formats: list[LineFormat], tz: ZoneInfo, mtime_day: date | None) -> date | None:
    """The day of the first line that has one; a yearless line takes its year from the mtime."""
    hint = mtime_day.year if mtime_day else None
    for line in lines:
        found = _match_line(line, formats, year_hint=hint, tz=tz)
        if found and found[1] and mtime_day is not None and found[0] > mtime_day:
            # A line is never written after its file's last change: this one is from the year before.
            found = _match_line(line, formats, year_hint=mtime_day.year - 1, tz=tz)
        if found:
            return found[0]
    return None


def _edge_days(entry: FileEntry, head: bytes, tail: bytes, formats: list[LineFormat],
               tz: ZoneInfo) -> tuple[date, date] | None:
    """First and last day of an undated file from its edges (tail empty: the head is the whole file)."""
    whole = not tail
    mtime_day = _mtime_day(entry.mtime, tz)
    first = _dated(_lines(head, drop_first=False, drop_last=not whole), formats, tz, mtime_day)
    tail_lines = _lines(head if whole else tail, drop_first=not whole, drop_last=False)
    last = _dated(reversed(tail_lines), formats, tz, mtime_day)
    if first is None and last is None:
        return None
    first, last = first or last, last or first
    return (min(first, last), max(first, last))


def _bytes_key(entry: FileEntry) -> bytes:
    return _escape(entry.path)


def analyse_folder(entries: list[FileEntry], spec: LogPath, read_edges: Callable[[str], tuple[bytes, bytes]],
                   formats: list[LineFormat], tz: ZoneInfo, *, edge_bytes: int = 4096,
                   max_files: int = 50_000, deadline: float | None = None) -> LogFolderRead:
    """The days one folder's files cover, as both readers report them.

    A file is dated by ``spec.name_pattern`` when its name matches, else by
    its first and last dated complete lines: ``read_edges(path)`` returns the
    first ``edge_bytes`` and the last ``edge_bytes`` (or ``b""`` when the file
    is no longer than ``edge_bytes``), and is called only for such files; an
    OSError from it leaves that file undated. More than ``max_files`` entries:
    the first ``max_files`` (by path) are analysed, error ``too_many``.
    ``deadline`` (time.monotonic()) passed: the files done so far count,
    error ``timeout``. The listing digest covers every file counted.
    """
    ordered = sorted(entries, key=_bytes_key)
    result = LogFolderRead(path=spec.path, name_pattern=spec.name_pattern, recursive=spec.recursive)
    error: tuple[str, str] | None = None
    if len(ordered) > max_files:
        ordered = ordered[:max_files]
        error = ("too_many", f"more than {max_files} files; the first {max_files} by name were read")
    ranges: list[tuple[date, date]] = []
    by_name = by_content = undated = read = 0
    for index, entry in enumerate(ordered):
        day = date_from_name(entry.path, spec.name_pattern) if spec.name_pattern else None
        if day is not None:
            by_name += 1
            ranges.append((day, day))
            continue
        if deadline is not None and time.monotonic() > deadline:
            error = ("timeout", f"time limit reached after {index} of {len(ordered)} files")
            break
        try:
            head, tail = read_edges(entry.path)
        except OSError:
            undated += 1
            continue
        head, tail = bytes(head[:edge_bytes]), bytes(tail[-edge_bytes:]) if tail else b""
        read += len(head) + len(tail)
        span = _edge_days(entry, head, tail, formats, tz)
        if span is None:
            undated += 1
        else:
            by_content += 1
            ranges.append(span)
    covered = _merge(ranges)
    result = result.model_copy(update={
        "ok": error is None,
        "error": error[0] if error else None,
        "error_detail": error[1] if error else None,
        "files": len(ordered),
        "dated_by_name": by_name,
        "dated_by_content": by_content,
        "undated": undated,
        "covered": covered,
        "oldest": covered[0].first if covered else None,
        "newest": covered[-1].last if covered else None,
        "listing_sha256": listing_sha256((e.path, e.size, e.mtime) for e in ordered),
        "bytes_read": read,
    })
    return result


# ---------------------------------------------------------------- offline folder


def _walk_local(root: Path, recursive: bool, limit: int, deadline: float | None) -> tuple[list[FileEntry], bool]:
    """Regular files under root (never through a symlink), at most ``limit``; (entries, stopped early)."""
    entries: list[FileEntry] = []
    pending: list[tuple[str, str]] = [(str(root), "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as it:
            for item in it:
                if deadline is not None and time.monotonic() > deadline:
                    return entries, True
                rel = prefix + item.name
                if item.is_symlink():
                    continue  # a link may lead out of the folder; logs are never links
                if item.is_dir(follow_symlinks=False):
                    if recursive:
                        pending.append((item.path, rel + "/"))
                    continue
                if not item.is_file(follow_symlinks=False):
                    continue
                st = item.stat(follow_symlinks=False)
                entries.append(FileEntry(rel, st.st_size, int(st.st_mtime)))
                if len(entries) > limit:
                    return entries, True
    return entries, False


def _local_edges(root: Path, edge_bytes: int) -> Callable[[str], tuple[bytes, bytes]]:
    def read_edges(rel: str) -> tuple[bytes, bytes]:
        # O_NOFOLLOW: a file swapped for a link since the listing is not followed; O_NONBLOCK:
        # nor does a FIFO put there block the read.
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError("not a regular file")
            head = os.pread(fd, edge_bytes, 0)
            if st.st_size <= edge_bytes:
                return head, b""
            return head, os.pread(fd, edge_bytes, st.st_size - edge_bytes)
        finally:
            os.close(fd)

    return read_edges


def read_local_folder(path: Path, spec: LogPath, formats: list[LineFormat], tz: ZoneInfo, *,
                      edge_bytes: int = 4096, max_files: int = 50_000,
                      deadline: float | None = None) -> LogFolderRead:
    """:func:`analyse_folder` on a local folder (offline mode; logs copied onto a USB stick).

    Lists with os.scandir (recursively when ``spec.recursive``), never
    following a symlink, and opens files read-only. A regular file as
    ``path`` is read as a folder of that one file.
    """
    path = Path(path)
    base = LogFolderRead(path=spec.path, name_pattern=spec.name_pattern, recursive=spec.recursive, ok=False)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return base.model_copy(update={"error": "missing", "error_detail": str(path)})
    except PermissionError:
        return base.model_copy(update={"error": "permission", "error_detail": str(path)})
    except OSError as exc:
        return base.model_copy(update={"error": "io", "error_detail": f"{path}: {exc.strerror or exc}"})
    if stat.S_ISREG(st.st_mode):
        entry = FileEntry(path.name, st.st_size, int(st.st_mtime))
        return analyse_folder([entry], spec, _local_edges(path.parent, edge_bytes), formats, tz,
                              edge_bytes=edge_bytes, max_files=max_files, deadline=deadline)
    if not stat.S_ISDIR(st.st_mode):
        return base.model_copy(update={"error": "not_a_folder", "error_detail": str(path)})
    try:
        entries, stopped = _walk_local(path, spec.recursive, max_files, deadline)
    except PermissionError as exc:
        return base.model_copy(update={"error": "permission", "error_detail": str(exc.filename or path)})
    except OSError as exc:
        return base.model_copy(update={"error": "io", "error_detail": f"{exc.filename or path}: {exc.strerror}"})
    result = analyse_folder(entries, spec, _local_edges(path, edge_bytes), formats, tz,
                            edge_bytes=edge_bytes, max_files=max_files, deadline=deadline)
    if stopped and result.error is None:
        # The walk stopped on the deadline before the listing was complete.
        result = result.model_copy(update={"ok": False, "error": "timeout",
                                           "error_detail": f"time limit reached while listing ({len(entries)} files)"})
    return result
