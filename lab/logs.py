"""Log folders for the lab's log servers, generated from a scenario, and the truth they carry.

A folder covers ``days_back`` days up to the lab's "today" (day 0 is today,
day ``days_back - 1`` the oldest), minus the ``missing`` day ranges. Its files
are what a café server keeps: one small billing log per day named by a
strftime pattern (``billing-%Y%m%d.log``), optionally in month sub-folders,
or rotated logs whose names carry no date (``billing.log``, ``billing.log.1``
…) and whose first and last lines carry the timestamps. Every file's mtime
is set to its last record, as the writing program would leave it.

"Today" is the venue's day (Asia/Shanghai) when the lab comes up; the probe's
clock is the host clock, so both see the same day unless a run straddles
midnight, which the truth lets a test notice (it records the day used).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["VENUE_TZ", "LogsError", "generate", "lab_today", "day_ranges", "tree_digest"]

VENUE_TZ = ZoneInfo("Asia/Shanghai")
# Seats and members of the fictional billing lines; the numbers only make lines look lived-in.
_SEATS = 24
_EVENTS = ("上机 / logon", "下机 / logoff", "充值 / top-up", "换机 / seat change")


class LogsError(ValueError):
    """A folder spec that cannot be generated (names that collide, a path outside the root)."""


def lab_today() -> date:
    """The venue's day now (Asia/Shanghai), the "today" the lab generates logs against."""
    return datetime.now(VENUE_TZ).date()


def day_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days merged into (first, last) ranges, both ends included, oldest first."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def _field(spec: Any, key: str, default: Any = None) -> Any:
    """A folder spec may be a dict or a pydantic model (lab.scenario.LogFolderSpec)."""
    if isinstance(spec, dict):
        return spec.get(key, default)
    return getattr(spec, key, default)


def _present_days(spec: Any, today: date) -> list[date]:
    """The days the folder has records for, oldest first."""
    missing: set[int] = set()
    for a, b in _field(spec, "missing", []) or []:
        lo, hi = sorted((int(a), int(b)))
        missing.update(range(lo, hi + 1))
    days_back = int(_field(spec, "days_back"))
    return [today - timedelta(days=ago) for ago in range(days_back - 1, -1, -1) if ago not in missing]


def _records(day: date, n: int, seed: str) -> list[datetime]:
    """``n`` record times spread over the venue's opening hours of ``day`` (08:00 to 23:59), ascending."""
    start = datetime.combine(day, time(8, 0), VENUE_TZ)
    span = 16 * 3600 - 60
    offset = sum(seed.encode()) % 97  # so the folders' lines do not share the same seconds
    return [start + timedelta(seconds=(offset + k * span // max(n, 1)) % span) for k in range(n)]


def _line(at: datetime, fmt: str, k: int) -> str:
    seat = (at.toordinal() * 7 + k) % _SEATS + 1
    member = (at.toordinal() * 131 + k * 17) % 10000
    return (f"{at.strftime(fmt)} [INFO] 终端 WB-{seat:03d} {_EVENTS[k % len(_EVENTS)]} "
            f"会员 M{member:04d} 余额 {(member % 500) / 10:.2f}\n")


def _write(path: Path, lines: list[str], mtime: datetime) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(lines).encode()
    with open(path, "xb") as fh:  # "x": a generated name never overwrites another one's file
        fh.write(data)
    stamp = mtime.timestamp()
    os.utime(path, (stamp, stamp))
    return len(data)


def _per_day(spec: Any, days: list[date]) -> dict[date, int]:
    """Files per day: ``files_per_day``, or ``count`` spread over the days (the first days take the rest)."""
    count = _field(spec, "count")
    if count is None:
        n = int(_field(spec, "files_per_day", 1) or 1)
        return {d: n for d in days}
    if not days or count < len(days):
        raise LogsError(f"count {count} is fewer than the {len(days)} days the folder covers")
    base, rest = divmod(int(count), len(days))
    return {d: base + (1 if i < rest else 0) for i, d in enumerate(days)}


def _dated(folder: Path, spec: Any, days: list[date]) -> tuple[int, int]:
    """Files named by the pattern; returns (files, bytes)."""
    pattern = _field(spec, "name_pattern")
    fmt = _field(spec, "line_format") or "%Y-%m-%d %H:%M:%S"
    recursive = bool(_field(spec, "recursive_subdirs", False))
    files = size = 0
    for day, n in _per_day(spec, days).items():
        for k, at in enumerate(_records(day, n, pattern)):
            name = at.strftime(pattern)
            if "/" in name or name in (".", ".."):
                raise LogsError(f"name pattern {pattern!r} makes {name!r}, not a file name")
            # A month per sub-folder, as many billing products keep their logs.
            where = folder / at.strftime("%Y-%m") if recursive else folder
            # A few lines a day in the usual folders; one line a file where a day has many (the big folder).
            records = _records(day, 3, name) if n <= 4 else [at]
            lines = [_line(r, fmt, j) for j, r in enumerate(records)]
            try:
                size += _write(where / name, lines, records[-1])
            except FileExistsError:
                raise LogsError(f"name pattern {pattern!r} gives two files the name {name!r} "
                                f"({n} files a day need a time of day in the pattern)") from None
            files += 1
    return files, size


def _undated(folder: Path, spec: Any, days: list[date]) -> tuple[int, int]:
    """Rotated logs (``billing.log``, ``billing.log.1`` …, newest first) dated only by their lines.

    A file holds one run of consecutive days (at most ``days_per_file``), so its
    first and last lines bound exactly the days it covers: a missing day always
    falls between two files, where a reader of first and last lines can see it.
    """
    base = _field(spec, "base_name") or "billing.log"
    fmt = _field(spec, "line_format") or "%Y-%m-%d %H:%M:%S"
    per_file = int(_field(spec, "days_per_file", 7) or 7)
    chunks: list[list[date]] = []
    for first, last in day_ranges(days):
        run = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        chunks += [run[i:i + per_file] for i in range(0, len(run), per_file)]
    files = size = 0
    for index, chunk in enumerate(reversed(chunks)):
        lines = [_line(at, fmt, k) for day in chunk for k, at in enumerate(_records(day, 2, base))]
        name = base if index == 0 else f"{base}.{index}"
        size += _write(folder / name, lines, _records(chunk[-1], 2, base)[-1])
        files += 1
    return files, size


def _folder_dir(root: Path, path: str) -> Path:
    """Where a folder the profile names (``/var/log/billing``) lives under the server's root."""
    rel = Path(path.lstrip("/"))
    if not path.startswith("/") or ".." in rel.parts or not rel.parts:
        raise LogsError(f"folder path must be absolute, without '..': {path!r}")
    return root / rel


def generate(root: Path, spec: Any, today: date | None = None) -> dict[str, Any]:
    """Write the folders of one log server under ``root`` and return their truth.

    ``spec`` holds ``folders`` (dicts or lab.scenario.LogFolderSpec): ``path``,
    ``name_pattern`` (strftime; null with ``undated``), ``days_back``,
    ``missing`` ([[from_days_ago, to_days_ago], …]), ``files_per_day``,
    ``count`` (total files instead), ``recursive_subdirs``, ``undated``,
    ``line_format``. The truth per folder: ``path``, ``files``, ``bytes``,
    ``oldest`` and ``newest`` (ISO days), ``covered`` and ``gaps`` (day
    ranges, both ends included; gaps lie between oldest and newest), how the
    files are dated; plus ``today``.
    """
    today = today or lab_today()
    folders = []
    for folder in _field(spec, "folders", []) or []:
        days = _present_days(folder, today)
        if not days:
            raise LogsError(f"folder {_field(folder, 'path')!r} covers no day")
        where = _folder_dir(root, _field(folder, "path"))
        where.mkdir(parents=True, exist_ok=True)
        undated = bool(_field(folder, "undated", False))
        if undated:
            files, size = _undated(where, folder, days)
        elif _field(folder, "name_pattern"):
            files, size = _dated(where, folder, days)
        else:
            raise LogsError(f"folder {_field(folder, 'path')!r} needs a name_pattern or undated: true")
        covered = day_ranges(days)
        gaps = [(a + timedelta(days=1), b - timedelta(days=1)) for (_, a), (b, _) in zip(covered, covered[1:])]
        folders.append({
            "path": _field(folder, "path"),
            "name_pattern": None if undated else _field(folder, "name_pattern"),
            "recursive": bool(_field(folder, "recursive_subdirs", False)),
            "dated_by": "content" if undated else "name",
            "files": files,
            "bytes": size,
            "oldest": days[0].isoformat(),
            "newest": days[-1].isoformat(),
            "covered": [[a.isoformat(), b.isoformat()] for a, b in covered],
            "gaps": [[a.isoformat(), b.isoformat()] for a, b in gaps],
        })
    return {"today": today.isoformat(), "folders": folders}


def tree_digest(root: Path) -> str:
    """SHA-256 over a whole tree: every entry's relative name, type, mode, size and mtime (ns), and
    every file's bytes, in sorted order; any write, rename, chmod, touch or new file changes it.

    Access times are left out: reading a file may move them (relatime), and reading is allowed.
    """
    outer = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            outer.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0"
                         .encode("utf-8", "surrogateescape"))
            if stat.S_ISREG(st.st_mode):
                outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()
