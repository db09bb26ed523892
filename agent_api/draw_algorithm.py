#!/usr/bin/env python3
"""cafe-draw/1: the public, re-verifiable draw of "双随机、一公开" (random venues, random inspectors).

This file is both the specification of the draw and its reference
implementation. It needs nothing but Python's standard library (3.8 or later):
anyone can download it alone and check a published draw with

    python3 draw_algorithm.py BUNDLE.json

which prints the task, every pick and a verdict, and exits 0 when every
published value is re-derived exactly, 1 when anything differs (each problem
on its own line), 2 when the file cannot be read as JSON. The service
(agent_api.draws) imports the same functions, so there is one implementation.

Notation
--------
* Text is Unicode, encoded as UTF-8 wherever it is hashed.
* ``LP(x)``: the 8-byte big-endian length of the UTF-8 bytes of ``x``,
  followed by those bytes. Every variable-length input to a hash is
  length-prefixed, so no two different input lists hash alike.
* ``‖``: byte concatenation. ``SHA-256`` and ``HMAC-SHA-256`` are FIPS 180-4
  and RFC 2104. ``hex``: lowercase hexadecimal.
* ``str(n)`` of an integer: its decimal digits, no sign, no leading zeros.

1. Snapshot (frozen at *prepare*)
---------------------------------
The registries in the draw, one line per entry, fields separated by one TAB:

    V<TAB>credit_code<TAB>flag<TAB>venue name   one per venue; flag "1" blacklisted, else "0"
    I<TAB>badge<TAB>unit                        one per inspector of the pool
    C<TAB>badge<TAB>credit_code                 one per declared conflict (回避) between them

No field is empty or contains U+0000..U+001F (TAB and newline included),
U+007F..U+009F, U+2028, U+2029 or a surrogate. The lines are sorted by their
UTF-8 bytes (the same order as by code points) and none repeats; no two V
lines share a credit code, no two I lines a badge, and every C line names a
badge and a credit code that have lines. ``snapshot_bytes`` is every line
followed by "\\n", concatenated; ``snapshot_sha256`` = hex SHA-256 of it.
Candidates are keyed by credit code (venues) and badge (inspectors).

2. Sample sizes
---------------
A ratio is decimal text ``DIGITS[.DIGITS]`` with 0 < ratio <= 1, used as an
exact fraction (never a float: 5% of 60 is 3, ``ceil(0.05 * 60.0)`` is 4).
``size(ratio, N)`` = 0 if N = 0, else min(N, max(1, ceil(ratio × N))).
With V the venues, B those with flag 1 and k = inspectors_per_venue (an
integer >= 2): ``regular = size(ratio, |V|)``, ``blacklist =
size(blacklist_ratio, |B|)``.

3. Announcement (published at *prepare*, before any witness input exists)
-------------------------------------------------------------------------
A JSON object: algorithm ("cafe-draw/1"), task_number, task_name,
plan_number, plan_name, jurisdiction, authority, check_type, check_start,
check_end, prepared_at, snapshot_sha256, counts {venues, blacklist,
inspectors, conflicts} (numbers of V lines, V lines with flag 1, I lines, C
lines), ratio, blacklist_ratio, inspectors_per_venue, sizes {regular,
blacklist}, commitment (hex SHA-256 of the 32 secret bytes) and beacon_name
(the public randomness beacon whose future value will be used, or null).

4. Seed (at *draw*)
-------------------
Witnesses (at least one) each give a name (a field as in 1, not only
spaces) and dice digits (ASCII 0-9 only, at least one each, at least
MIN_DIGITS = 20 in all), in the order they were entered. A beacon value is given if and only if a beacon was named
(non-empty text), else it is null. Then

    seed = HMAC-SHA-256(key = secret,
             msg = LP(algorithm) ‖ LP(snapshot_sha256) ‖ LP(task_number)
                   ‖ LP(str(regular)) ‖ LP(str(blacklist)) ‖ LP(str(k))
                   ‖ LP(ratio) ‖ LP(blacklist_ratio) ‖ LP(beacon_name or "")
                   ‖ LP(str(number of witnesses))
                   ‖ LP(name_1) ‖ LP(digits_1) ‖ ... ‖ LP(name_n) ‖ LP(digits_n)
                   ‖ LP(beacon_value or ""))

The secret is committed to (announced) before any digit is thrown, and the
witnesses throwing them do not know it: neither side alone chooses the
seed; a beacon named in advance adds a value nobody present controls.

5. Tickets and streams
----------------------
``ticket(stream, key)`` = hex SHA-256(seed ‖ LP(stream) ‖ LP(key)) (seed as
its 32 raw bytes). A stream is its candidates sorted by (ticket, key)
ascending; tickets are 64 lowercase hex digits, so text order is numeric
order; keys, for ties (astronomically unlikely, but defined), are compared
by their UTF-8 bytes. There is no modulo and no language PRNG anywhere:
each candidate's place depends only on its own hash (consistent sampling,
as in Rivest's sampler and VotingWorks Arlo). Streams:
"venue" (every V credit code), "blacklist" (the V credit codes with flag 1),
"inspector" (every I badge).

6. Picks
--------
* Regular: the first ``regular`` codes of the venue stream.
* Blacklist: the first ``blacklist`` codes of the blacklist stream. One
  already drawn as regular is listed in ``blacklist_duplicates`` and is not
  replaced (seed 000: 黑名单网吧数据库抽取的名单如与常规网吧抽取名单重复，则不再从
  黑名单网吧数据库抽取).
* The drawn venues, in order: the regular picks in stream order, then the
  blacklist picks that are not duplicates, in stream order. A pick's
  ``position`` is its 1-based rank in its own stream.

7. Teams (dealing)
------------------
One cursor c (starting at 0) runs over the inspector stream of P badges,
cyclically (badge at index c mod P). For each drawn venue in order: scan
from c, taking each badge that has no conflict with the venue and is not
already on its team, until the team has k; every scanned position advances
c by one, taken or skipped. If P positions pass without completing the team
the draw fails (the service refuses to prepare such a draw). The team lists
badges in the order taken.

8. Replacements (after the draw, each approved: who, why, when)
-----------------------------------------------------------------
Applied one by one, in the order approved, after the picks of 6 and 7;
each continues the same cursors.
* ``{"kind": "venue", "venue": code}`` withdraws that active pick (its team
  is dissolved). The stream it was drawn from ("venue" for regular,
  "blacklist" for blacklist picks) has its own cursor, starting just after
  the last position taken in 6 (``regular``, resp. ``blacklist``): advance it
  one position at a time to the first code never drawn in this draw (any
  kind, withdrawn ones included). That code is the replacement, of the same
  kind, and gets a team dealt as in 7. If the stream runs out, the
  replacement is null.
* ``{"kind": "inspector", "venue": code, "inspector": badge}`` replaces
  that member of an active pick's team: scan the inspector cursor as in 7
  for the first badge with no conflict with the venue, not on its team and
  never withdrawn from it (the replaced badge included); it takes the
  replaced badge's place in the team. None within P positions: the
  replacement fails.
Each entry of the bundle also carries approved_by {badge} (the approving
officer's badge number), reason and at (ISO 8601 time), all non-empty text,
and ``replacement`` (the code or badge that 8 yields, or null).

9. Bundle (published at *publish*, secret revealed)
---------------------------------------------------
A JSON object: format "cafe-draw-bundle/1"; announcement (3); snapshot (the
lines of 1, in order); inputs {witnesses [{name, digits}], beacon_value,
drawn_at}; secret (hex); seed (hex); tickets {"venue": [[key, ticket], ...]
in stream order, "blacklist": [...], "inspector": [...]}; picks {regular,
blacklist, blacklist_duplicates, teams {code: [badges]}} (as drawn, before
replacements); replacements [...] (8); final [{credit_code, kind, position,
inspectors}] (the active picks after every replacement: the drawn order of 6
with each replacement appended when made); published_at.

Verification re-derives everything from the primary inputs (snapshot lines,
secret, the announcement's task number, ratios, k and beacon name, the
witness inputs, the beacon value and the replacement requests) and compares
every published value, as JSON values (``true`` is not ``1``): the
commitment, the snapshot hash, counts and sizes, the seed, every ticket and
stream order, the picks, the teams, each replacement and the final list. The
announcement's other fields, drawn_at and published_at are told, not
derived: they must be text. An unknown algorithm or format version fails.

10. Test vector
---------------
Snapshot lines (TAB shown as "|"): C|350001|91350105MA0000002Y,
I|350001|网安大队, I|350002|网安大队, I|350003|派出所, I|350004|派出所,
V|91350105MA0000001X|0|甲网吧, V|91350105MA0000002Y|1|乙网吧,
V|91350105MA0000003Z|0|丙网吧. snapshot_sha256 =
9159b01e8a20b96838a96f63e0b68f196ac9a10be7b8776e67b5fde9fee3a98f.
task_number "T-1", ratio and blacklist_ratio "0.05", k = 2, no beacon; sizes
1 and 1. Secret: the bytes 00 01 02 ... 1f (commitment
630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd).
Witnesses: 张三 "1234567890", 李四 "0987654321". Then
seed = 9912c26c7fe231b4a586ba66c45e2f3e358a8de31d033a01f47e52821e89a66a;
venue stream 91350105MA0000001X (ticket 23a90bd8...), ...0002Y (79b7fab1...),
...0003Z (f3bd9e94...); inspector stream 350004 (0efe662c...), 350002
(8cb756ae...), 350003 (be7e9854...), 350001 (e9988a94...). Picks: regular
91350105MA0000001X with 350004, 350002; blacklist 91350105MA0000002Y with
350003 and, 350001 being in conflict with it, the cursor wrapping round to
350004.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import math
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

__all__ = ["ALGORITHM", "BUNDLE_FORMAT", "MIN_DIGITS", "MIN_TEAM", "STREAMS", "ANNOUNCEMENT_FIELDS", "TOLD_FIELDS",
           "SnapshotError", "DrawError", "Snapshot", "Pick", "Outcome", "Verification", "DrawState",
           "lp", "field_problem", "snapshot_lines", "snapshot_bytes", "snapshot_sha256", "parse_snapshot",
           "parse_ratio", "sample_size", "announce", "witness_problems", "derive_seed", "stream", "compute_draw",
           "make_bundle", "bundle_json", "verify_bundle", "verify_file", "main"]

ALGORITHM = "cafe-draw/1"
BUNDLE_FORMAT = "cafe-draw-bundle/1"
MIN_DIGITS = 20
MIN_TEAM = 2
STREAMS = ("venue", "blacklist", "inspector")
ANNOUNCEMENT_FIELDS = ("algorithm", "task_number", "task_name", "plan_number", "plan_name", "jurisdiction",
                       "authority", "check_type", "check_start", "check_end", "prepared_at", "snapshot_sha256",
                       "counts", "ratio", "blacklist_ratio", "inspectors_per_venue", "sizes", "commitment",
                       "beacon_name")
# Announcement fields that are told, not derived: each must be text.
TOLD_FIELDS = ("task_name", "plan_number", "plan_name", "jurisdiction", "authority", "check_type", "check_start",
               "check_end", "prepared_at")
# Bundles of 100,000 venues are ~20 MB; this only stops a runaway file.
MAX_BUNDLE_BYTES = 256 * 1024 * 1024
# How many differing tickets are named one by one before the rest are only counted.
_SHOWN = 5

# Controls (tab and newline included), C1 controls, line/paragraph separators and lone surrogates:
# none may appear in a field (a surrogate cannot even be encoded as UTF-8).
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same, but tabs allowed: used on whole snapshot lines, whose fields tabs separate,
_BAD_IN_LINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# and with newlines allowed too: used on the lines joined by newlines (their count is checked apart).
_BAD_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_RATIO = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_DIGITS = re.compile(r"[0-9]+\Z")

Problems = List[str]


class SnapshotError(ValueError):
    """The registry lines break a rule of section 1; ``problems`` lists each ("中文 / English")."""

    def __init__(self, problems: Problems) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DrawError(ValueError):
    """The draw cannot be carried out as asked (a team cannot be completed, a pick is not active, ...)."""


@contextmanager
def _no_cycle_collector() -> Iterator[None]:
    """Pause Python's cycle collector: a big draw makes about a million acyclic objects, and the
    collector's passes over them cost a third of the time while finding nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- 1. snapshot --------------------------------------------------------------------------------------------------

def lp(text: str) -> bytes:
    """``LP(x)``: 8-byte big-endian length of the UTF-8 bytes of ``text``, then the bytes."""
    data = text.encode("utf-8")
    return len(data).to_bytes(8, "big") + data


def field_problem(zh: str, en: str, value: object) -> Optional[str]:
    """Why ``value`` cannot be a field named ``zh`` / ``en`` (section 1: non-empty text without control
    characters), or None."""
    if not isinstance(value, str) or not value:
        return f"{zh}为空或不是文本 / {en} is empty or not text"
    if _BAD_CHAR.search(value):
        return f"{zh}含控制字符 / {en} contains a control character: {value!r}"
    return None


def _entry(tag: str, fields: Sequence[Tuple[str, str, str]], keys: set, problems: Problems) -> str:
    """One V or I line from its ``(zh, en, value)`` fields, the first being its key (which must be new)."""
    problems += [p for zh, en, value in fields for p in [field_problem(zh, en, value)] if p]
    zh, en, key = fields[0]
    if key in keys:
        problems.append(f"{zh}重复 / duplicate {en}: {key}")
    keys.add(key)
    return "\t".join([tag, *(value for _zh, _en, value in fields)])


def snapshot_lines(venues: Iterable[Tuple[str, bool, str]], inspectors: Iterable[Tuple[str, str]],
                   conflicts: Iterable[Tuple[str, str]]) -> List[str]:
    """The canonical snapshot lines (section 1) of ``(credit_code, blacklisted, name)`` venues,
    ``(badge, unit)`` inspectors and ``(badge, credit_code)`` conflicts.

    Raises SnapshotError listing every empty field, control character,
    duplicate key and conflict naming an absent venue or inspector.
    """
    problems: Problems = []
    codes: set = set()
    badges: set = set()
    lines = [_entry("V", [("信用代码", "credit code", code), ("黑名单标记", "flag", "1" if flag else "0"),
                          (f"场所 {code} 名称", f"name of venue {code}", name)], codes, problems)
             for code, flag, name in venues]
    lines += [_entry("I", [("警号", "badge", badge), (f"检查人员 {badge} 单位", f"unit of inspector {badge}", unit)],
                     badges, problems) for badge, unit in inspectors]
    pairs: set = set()
    for badge, code in conflicts:
        if badge not in badges or code not in codes:
            problems.append(f"回避关系指向不在抽取范围的对象 / conflict names an absent entry: {badge} {code}")
        if (badge, code) in pairs:
            problems.append(f"回避关系重复 / duplicate conflict: {badge} {code}")
        pairs.add((badge, code))
        lines.append(f"C\t{badge}\t{code}")
    if problems:
        raise SnapshotError(problems)
    # Python orders str by code point, which is the order of their UTF-8 bytes.
    return sorted(lines)


def snapshot_bytes(lines: Sequence[str]) -> bytes:
    """Every line followed by a newline, as UTF-8."""
    return "".join(line + "\n" for line in lines).encode("utf-8")


def snapshot_sha256(lines: Sequence[str]) -> str:
    """Hex SHA-256 of :func:`snapshot_bytes`."""
    return hashlib.sha256(snapshot_bytes(lines)).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """Parsed snapshot: venues ``{code: (blacklisted, name)}``, inspectors ``{badge: unit}``, conflicts."""

    venues: Dict[str, Tuple[bool, str]]
    inspectors: Dict[str, str]
    conflicts: frozenset
    blacklist: List[str]  # credit codes of the blacklisted venues

    def counts(self) -> Dict[str, int]:
        """The announcement's ``counts``."""
        return {"venues": len(self.venues), "blacklist": len(self.blacklist),
                "inspectors": len(self.inspectors), "conflicts": len(self.conflicts)}


def _line_problem(line: str, before: Optional[str], seen: Dict[str, set],
                  keys: Dict[str, set]) -> Optional[Tuple[str, str]]:
    """What is wrong with one line, as (中文, English). ``seen``: the V and I keys of the lines before it;
    ``keys``: those of all lines (a conflict line sorts before the lines it names)."""
    fields = line.split("\t")
    shape = {"V": 4, "I": 3, "C": 3}.get(fields[0])
    if before is not None and not before < line:
        return "未按序或重复", "out of order or repeated"
    if _BAD_IN_LINE.search(line):
        return "含控制字符", "contains a control character"
    if "" in fields:
        return "有空字段", "has an empty field"
    if shape is None or len(fields) != shape:
        return "不是格式正确的 V、I 或 C 行", f"not a V, I or C line of the right shape: {line[:80]!r}"
    if fields[0] == "V" and fields[2] not in ("0", "1"):
        return "黑名单标记须为 0 或 1", "the blacklist flag must be 0 or 1"
    if fields[0] == "C":
        if fields[1] not in keys["I"] or fields[2] not in keys["V"]:
            return "回避关系指向不存在的对象", "conflict names an absent entry"
        return None
    if fields[1] in seen[fields[0]]:
        return "信用代码或警号重复", f"duplicate credit code or badge {fields[1]}"
    seen[fields[0]].add(fields[1])
    return None


def _line_problems(lines: List[str]) -> Problems:
    """Every problem of every line, one by one (the slow path, taken only when the fast checks fail)."""
    keys: Dict[str, set] = {"V": set(), "I": set()}
    for line in lines:
        fields = line.split("\t")
        if fields[0] in keys and len(fields) > 1:
            keys[fields[0]].add(fields[1])
    seen: Dict[str, set] = {"V": set(), "I": set()}
    problems: Problems = []
    for n, line in enumerate(lines, 1):
        found = _line_problem(line, lines[n - 2] if n > 1 else None, seen, keys)
        if found:
            problems.append(f"快照第 {n} 行：{found[0]} / snapshot line {n}: {found[1]}")
    if len(problems) > 50:
        problems = problems[:50] + [f"…另有 {len(problems) - 50} 处 / {len(problems) - 50} more"]
    return problems


def parse_snapshot(lines: object) -> Snapshot:
    """Parse and check snapshot lines (section 1); raises SnapshotError listing what is wrong."""
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise SnapshotError(["快照须为文本行列表 / the snapshot must be a list of text lines"])
    # Fast checks over all lines at once (100,000 venues must verify well within a second);
    # any failure re-reads the lines one by one to name each problem.
    text = "\n".join(lines)
    rows = [line.split("\t") for line in lines]
    venues = {r[1]: (r[2] == "1", r[3]) for r in rows if r[0] == "V" and len(r) == 4 and r[2] in ("0", "1")}
    inspectors = {r[1]: r[2] for r in rows if r[0] == "I" and len(r) == 3}
    conflicts = frozenset((r[1], r[2]) for r in rows if r[0] == "C" and len(r) == 3)
    ok = (text.count("\n") == max(len(lines) - 1, 0) and not _BAD_IN_TEXT.search(text)
          and all(map(str.__lt__, lines, lines[1:])) and not any("" in r for r in rows)
          and len(venues) + len(inspectors) + len(conflicts) == len(lines)
          and all(b in inspectors and c in venues for b, c in conflicts))
    if not ok:
        raise SnapshotError(_line_problems(lines) or ["快照无效 / invalid snapshot"])
    return Snapshot(venues, inspectors, conflicts, [code for code, (flag, _n) in venues.items() if flag])


# --- 2. sizes -----------------------------------------------------------------------------------------------------

def parse_ratio(text: object) -> Fraction:
    """The exact value of a ratio text (``DIGITS[.DIGITS]``, 0 < ratio <= 1); ValueError otherwise."""
    if not isinstance(text, str) or not _RATIO.match(text):
        raise ValueError(f"比例须为小数文本 / a ratio must be decimal text such as \"0.05\": {text!r}")
    value = Fraction(text)
    if not 0 < value <= 1:
        raise ValueError(f"比例须大于 0 且不超过 1 / a ratio must be > 0 and <= 1: {text}")
    return value


def sample_size(ratio: str, n: int) -> int:
    """``ceil(ratio × n)`` exactly, at least 1 when n >= 1, at most n, 0 when n = 0."""
    if n <= 0:
        return 0
    return min(n, max(1, math.ceil(parse_ratio(ratio) * n)))


# --- 3. announcement ----------------------------------------------------------------------------------------------

def announce(lines: Sequence[str], *, task_number: str, task_name: str, plan_number: str, plan_name: str,
             jurisdiction: str, authority: str, check_type: str, check_start: str, check_end: str,
             prepared_at: str, ratio: str, blacklist_ratio: str, inspectors_per_venue: int, commitment: str,
             beacon_name: Optional[str]) -> Dict[str, Any]:
    """The announcement (section 3) of a draw over ``lines``; dates and times are ISO text."""
    counts = parse_snapshot(list(lines)).counts()
    return {
        "algorithm": ALGORITHM, "task_number": task_number, "task_name": task_name, "plan_number": plan_number,
        "plan_name": plan_name, "jurisdiction": jurisdiction, "authority": authority, "check_type": check_type,
        "check_start": check_start, "check_end": check_end, "prepared_at": prepared_at,
        "snapshot_sha256": snapshot_sha256(lines), "counts": counts, "ratio": ratio,
        "blacklist_ratio": blacklist_ratio, "inspectors_per_venue": inspectors_per_venue,
        "sizes": {"regular": sample_size(ratio, counts["venues"]),
                  "blacklist": sample_size(blacklist_ratio, counts["blacklist"])},
        "commitment": commitment, "beacon_name": beacon_name,
    }


@dataclass(frozen=True)
class _Params:
    """What the seed and the picks take from the announcement (everything else there is derived or told)."""

    task_number: str
    ratio: str
    blacklist_ratio: str
    k: int
    beacon_name: Optional[str]


def _params(announcement: object) -> Tuple[Optional[_Params], Problems]:
    """The draw parameters of an announcement, or the problems that keep them from being read."""
    if not isinstance(announcement, dict):
        return None, ["公告须为 JSON 对象 / the announcement must be a JSON object"]
    problems: Problems = []
    if announcement.get("algorithm") != ALGORITHM:
        return None, [f"未知的算法版本 / unknown algorithm version: {announcement.get('algorithm')!r} "
                      f"(this verifier knows {ALGORITHM})"]
    problems += [f"公告缺少字段 / announcement lacks {name}" for name in ANNOUNCEMENT_FIELDS
                 if name not in announcement]
    problems += [f"公告字段 {name} 须为文本 / announcement {name} must be text" for name in TOLD_FIELDS
                 if name in announcement and not isinstance(announcement[name], str)]
    task = announcement.get("task_number")
    problems += [p for p in [field_problem("任务编号", "task_number", task)] if p]
    for name in ("ratio", "blacklist_ratio"):
        try:
            parse_ratio(announcement.get(name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    k = announcement.get("inspectors_per_venue")
    if type(k) is not int or k < MIN_TEAM:
        problems.append(f"每个场所检查人员数须为不小于 {MIN_TEAM} 的整数 / inspectors_per_venue must be an "
                        f"integer >= {MIN_TEAM}: {k!r}")
    beacon = announcement.get("beacon_name")
    if beacon is not None and field_problem("信标名称", "beacon_name", beacon):
        problems.append("信标名称须为非空文本或 null / beacon_name must be non-empty text or null")
    if problems:
        return None, problems
    return _Params(task, announcement["ratio"], announcement["blacklist_ratio"], k, beacon), []


# --- 4. seed ------------------------------------------------------------------------------------------------------

def witness_problems(witnesses: object, beacon_name: Optional[str], beacon_value: object) -> Problems:
    """What breaks the witness and beacon rules of section 4 (empty: none)."""
    problems: Problems = []
    if not isinstance(witnesses, (list, tuple)) or not witnesses:
        problems.append("至少需要一名见证人 / at least one witness is needed")
        witnesses = []
    total = 0
    for n, witness in enumerate(witnesses, 1):
        if not (isinstance(witness, (list, tuple)) and len(witness) == 2):
            problems.append(f"见证人 {n} 格式不对 / witness {n} is not a (name, digits) pair")
            continue
        name, digits = witness
        if field_problem("姓名", "name", name) or not name.strip():
            problems.append(f"见证人 {n} 须有姓名（不含控制字符）/ witness {n} needs a name (no control characters)")
        if not isinstance(digits, str) or not _DIGITS.match(digits):
            problems.append(f"见证人 {n} 的骰子数字须为 0-9 且至少一位 / witness {n}: dice digits must be "
                            "ASCII 0-9, at least one")
        else:
            total += len(digits)
    if total < MIN_DIGITS:
        problems.append(f"骰子数字共 {total} 位，至少需要 {MIN_DIGITS} 位 / {total} dice digits in all, "
                        f"at least {MIN_DIGITS} are needed")
    if beacon_name is None and beacon_value is not None:
        problems.append("公告未指定信标，不得输入信标值 / no beacon was named, so no beacon value may be given")
    if beacon_name is not None and field_problem("信标值", "beacon_value", beacon_value):
        problems.append(f"须输入信标“{beacon_name}”的值 / the value of the named beacon {beacon_name!r} is needed")
    return problems


def derive_seed(secret: bytes, announcement: Dict[str, Any], lines: Sequence[str],
                witnesses: Sequence[Tuple[str, str]], beacon_value: Optional[str]) -> bytes:
    """The seed of section 4 (32 bytes); sizes and the snapshot hash are recomputed from ``lines``."""
    params, problems = _params(announcement)
    if params is None:
        raise DrawError("; ".join(problems))
    counts = parse_snapshot(list(lines)).counts()
    return _seed(secret, params, snapshot_sha256(lines), counts, witnesses, beacon_value)


def _seed(secret: bytes, p: _Params, sha: str, counts: Dict[str, int], witnesses: Sequence[Tuple[str, str]],
          beacon_value: Optional[str]) -> bytes:
    parts = [ALGORITHM, sha, p.task_number, str(sample_size(p.ratio, counts["venues"])),
             str(sample_size(p.blacklist_ratio, counts["blacklist"])), str(p.k), p.ratio, p.blacklist_ratio,
             p.beacon_name or "", str(len(witnesses))]
    for name, digits in witnesses:
        parts += [name, digits]
    parts.append(beacon_value or "")
    return hmac.new(secret, b"".join(lp(part) for part in parts), hashlib.sha256).digest()


# --- 5. tickets ---------------------------------------------------------------------------------------------------

def stream(seed: bytes, name: str, keys: Iterable[str]) -> List[List[str]]:
    """``[[key, ticket], ...]`` sorted by (ticket, key): the stream ``name`` of section 5."""
    copy = hashlib.sha256(seed + lp(name)).copy  # the common prefix is hashed once, not once per candidate
    tickets = []
    for key in keys:
        data = key.encode("utf-8")
        h = copy()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
        # Every ticket is 64 characters, so sorting ticket+key sorts by (ticket, key), faster than tuples.
        tickets.append(h.hexdigest() + key)
    tickets.sort()
    return [[joined[64:], joined[:64]] for joined in tickets]


# --- 6-8. picks, teams, replacements ------------------------------------------------------------------------------

@dataclass
class Pick:
    """An active drawn venue: its kind, 1-based rank in its stream, ticket and team (badges in dealing order)."""

    credit_code: str
    kind: str
    position: int
    ticket: str
    inspectors: List[str]

    def public(self) -> Dict[str, Any]:
        """The bundle's ``final`` entry."""
        return {"credit_code": self.credit_code, "kind": self.kind, "position": self.position,
                "inspectors": list(self.inspectors)}


class DrawState:
    """Sections 6-8 carried out: the streams, their cursors and the active picks.

    Made from the seed, it holds the picks and teams of 6 and 7; :meth:`apply`
    then performs one replacement request (8), in the order approved.
    :func:`compute_draw` and the verifier use it; nothing else needs to.
    """

    def __init__(self, snapshot: Snapshot, seed: bytes, regular: int, blacklist: int, k: int) -> None:
        self.snapshot, self.k = snapshot, k
        self.tickets = {"venue": stream(seed, "venue", snapshot.venues),
                        "blacklist": stream(seed, "blacklist", snapshot.blacklist),
                        "inspector": stream(seed, "inspector", snapshot.inspectors)}
        self._badges = [badge for badge, _t in self.tickets["inspector"]]
        self._blocked: Dict[str, set] = {}   # credit code -> badges it conflicts with
        for badge, code in snapshot.conflicts:
            self._blocked.setdefault(code, set()).add(badge)
        self.cursor = {"venue": regular, "blacklist": blacklist, "inspector": 0}
        self.active: Dict[str, Pick] = {}     # insertion order = drawn order
        self.drawn: set = set()
        self.withdrawn: Dict[str, set] = {}   # credit code -> badges withdrawn from its team
        self.regular = [code for code, _t in self.tickets["venue"][:regular]]
        self.blacklist = [code for code, _t in self.tickets["blacklist"][:blacklist]]
        regular_set = set(self.regular)
        self.duplicates = [code for code in self.blacklist if code in regular_set]
        for kind, codes in (("regular", self.regular), ("blacklist", self.blacklist)):
            for position, code in enumerate(codes, 1):
                if code not in self.drawn:
                    self._take(code, kind, position)
        self.teams = {code: list(pick.inspectors) for code, pick in self.active.items()}

    def _take(self, code: str, kind: str, position: int) -> None:
        ticket = self.tickets["venue" if kind == "regular" else "blacklist"][position - 1][1]
        self.drawn.add(code)
        team: List[str] = []
        while len(team) < self.k:
            badge = self._next_badge(code, team)
            if badge is None:
                raise DrawError(f"场所 {code} 无法配齐 {self.k} 名无回避的检查人员 / venue {code}: cannot find "
                                f"{self.k} inspectors without a conflict")
            team.append(badge)
        self.active[code] = Pick(code, kind, position, ticket, team)

    def _next_badge(self, code: str, team: List[str]) -> Optional[str]:
        """Scan the inspector cursor (at most one full cycle) for a badge free for ``code``."""
        blocked, withdrawn = self._blocked.get(code, ()), self.withdrawn.get(code, ())
        for _ in range(len(self._badges)):
            badge = self._badges[self.cursor["inspector"] % len(self._badges)]
            self.cursor["inspector"] += 1
            if badge not in blocked and badge not in withdrawn and badge not in team:
                return badge
        return None

    def replace_venue(self, code: str) -> Optional[str]:
        """Withdraw active pick ``code``; its replacement's code, or None when its stream ran out."""
        pick = self._active(code)
        del self.active[code]
        name = "venue" if pick.kind == "regular" else "blacklist"
        candidates = self.tickets[name]
        while self.cursor[name] < len(candidates):
            candidate = candidates[self.cursor[name]][0]
            self.cursor[name] += 1
            if candidate not in self.drawn:
                self._take(candidate, pick.kind, self.cursor[name])
                return candidate
        return None

    def replace_inspector(self, code: str, badge: str) -> str:
        """Replace ``badge`` on the team of active pick ``code``; the new badge."""
        pick = self._active(code)
        if badge not in pick.inspectors:
            raise DrawError(f"检查人员 {badge} 不在场所 {code} 的检查组中 / {badge} is not on the team of {code}")
        self.withdrawn.setdefault(code, set()).add(badge)
        new = self._next_badge(code, pick.inspectors)
        if new is None:
            raise DrawError(f"场所 {code} 已无可替换的检查人员 / venue {code}: no inspector left to replace {badge}")
        pick.inspectors[pick.inspectors.index(badge)] = new
        return new

    def _active(self, code: str) -> Pick:
        pick = self.active.get(code)
        if pick is None:
            raise DrawError(f"场所 {code} 不是有效的抽中对象 / venue {code} is not an active pick")
        return pick

    def apply(self, request: object) -> Optional[str]:
        """Carry out one replacement request (section 8); its replacement (code, badge or None)."""
        if not isinstance(request, dict) or not isinstance(request.get("venue"), str):
            raise DrawError("替换请求格式不对 / a replacement must be an object naming a venue")
        if request.get("kind") == "venue":
            return self.replace_venue(request["venue"])
        if request.get("kind") == "inspector" and isinstance(request.get("inspector"), str):
            return self.replace_inspector(request["venue"], request["inspector"])
        raise DrawError("替换类型须为 venue 或 inspector / a replacement's kind must be venue or inspector")

    def picks(self) -> Dict[str, Any]:
        """The bundle's ``picks`` (as drawn, before any replacement)."""
        return {"regular": list(self.regular), "blacklist": list(self.blacklist),
                "blacklist_duplicates": list(self.duplicates), "teams": {c: list(t) for c, t in self.teams.items()}}


@dataclass
class Outcome:
    """A computed draw: snapshot hash, sizes, seed (hex), streams, picks, each replacement, final picks."""

    snapshot_sha256: str
    counts: Dict[str, int]
    sizes: Dict[str, int]
    seed: str
    tickets: Dict[str, List[List[str]]]
    picks: Dict[str, Any]
    replacements: List[Optional[str]] = field(default_factory=list)
    final: List[Pick] = field(default_factory=list)


def compute_draw(lines: Sequence[str], announcement: Dict[str, Any], secret: bytes,
                 witnesses: Sequence[Tuple[str, str]], beacon_value: Optional[str],
                 requests: Sequence[Dict[str, Any]] = ()) -> Outcome:
    """Sections 4-8 from the primary inputs; ``requests`` are the approved replacements, in order.

    Raises SnapshotError for bad lines and DrawError when the announcement or
    the inputs break a rule or the draw cannot be completed.
    """
    params, problems = _params(announcement)
    if params is None:
        raise DrawError("; ".join(problems))
    with _no_cycle_collector():
        return _compute(parse_snapshot(list(lines)), snapshot_sha256(lines), params, secret, witnesses,
                        beacon_value, requests)


def _compute(snapshot: Snapshot, sha: str, params: _Params, secret: bytes, witnesses: Sequence[Tuple[str, str]],
             beacon_value: Optional[str], requests: Sequence[Dict[str, Any]]) -> Outcome:
    outcome, state = _start(snapshot, sha, params, secret, witnesses, beacon_value)
    outcome.replacements = [state.apply(request) for request in requests]
    outcome.final = list(state.active.values())
    return outcome


def _start(snapshot: Snapshot, sha: str, params: _Params, secret: bytes, witnesses: Sequence[Tuple[str, str]],
           beacon_value: Optional[str]) -> Tuple[Outcome, DrawState]:
    """Sections 4-7: the outcome before any replacement, and the state that replacements continue."""
    problems = witness_problems(witnesses, params.beacon_name, beacon_value)
    if problems:
        raise DrawError("; ".join(problems))
    counts = snapshot.counts()
    seed = _seed(secret, params, sha, counts, witnesses, beacon_value)
    sizes = {"regular": sample_size(params.ratio, counts["venues"]),
             "blacklist": sample_size(params.blacklist_ratio, counts["blacklist"])}
    state = DrawState(snapshot, seed, sizes["regular"], sizes["blacklist"], params.k)
    return Outcome(sha, counts, sizes, seed.hex(), state.tickets, state.picks(), [], list(state.active.values())), state


# --- 9. bundle ----------------------------------------------------------------------------------------------------

def make_bundle(announcement: Dict[str, Any], lines: Sequence[str], secret: bytes,
                witnesses: Sequence[Tuple[str, str]], beacon_value: Optional[str], drawn_at: str,
                replacements: Sequence[Dict[str, Any]], published_at: str) -> Dict[str, Any]:
    """The bundle of section 9; each replacement entry gets its ``replacement`` recomputed."""
    outcome = compute_draw(lines, announcement, secret, witnesses, beacon_value, replacements)
    entries = [dict(entry, replacement=new) for entry, new in zip(replacements, outcome.replacements)]
    return {
        "format": BUNDLE_FORMAT,
        "announcement": announcement,
        "snapshot": list(lines),
        "inputs": {"witnesses": [{"name": n, "digits": d} for n, d in witnesses], "beacon_value": beacon_value,
                   "drawn_at": drawn_at},
        "secret": secret.hex(),
        "seed": outcome.seed,
        "tickets": {name: outcome.tickets[name] for name in STREAMS},
        "picks": outcome.picks,
        "replacements": entries,
        "final": [pick.public() for pick in outcome.final],
        "published_at": published_at,
    }


def bundle_json(bundle: Dict[str, Any]) -> bytes:
    """The bundle as compact UTF-8 JSON (the bytes that are published)."""
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class Verification:
    """Result of :func:`verify_bundle`: ``ok``, each problem ("中文 / English"), and the re-derived final picks."""

    ok: bool
    problems: List[str]
    final: Optional[List[Dict[str, Any]]] = None


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _compare(problems: Problems, what: str, published: object, expected: object) -> None:
    # Python's == takes true for 1 and 1.0 for 1; JSON values differ when their canonical texts do.
    if published != expected or _canonical(published) != _canonical(expected):
        problems.append(f"{what} 与重算结果不符 / {what} differs from the recomputed value: "
                        f"published {_short(published)}, recomputed {_short(expected)}")


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "…"


def _check_tickets(problems: Problems, published: object, expected: Dict[str, List[List[str]]]) -> None:
    if not isinstance(published, dict):
        problems.append("tickets 须为对象 / tickets must be an object")
        return
    for name in STREAMS:
        want = expected[name]
        got = published.get(name)
        if got == want:
            continue
        if not isinstance(got, list):
            problems.append(f"缺少 {name} 票号流 / the {name} stream is missing")
            continue
        bad = [i for i in range(max(len(got), len(want)))
               if i >= len(got) or i >= len(want) or got[i] != want[i]]
        for i in bad[:_SHOWN]:
            problems.append(f"{name} 票号流第 {i + 1} 位不符 / {name} stream position {i + 1}: published "
                            f"{_short(got[i] if i < len(got) else None)}, recomputed "
                            f"{_short(want[i] if i < len(want) else None)}")
        if len(bad) > _SHOWN:
            problems.append(f"{name} 票号流另有 {len(bad) - _SHOWN} 处不符 / {len(bad) - _SHOWN} more "
                            f"{name} stream positions differ")


def _check_announcement(problems: Problems, ann: Dict[str, Any], outcome_counts: Dict[str, int],
                        sha: str, params: _Params) -> None:
    _compare(problems, "snapshot_sha256", ann.get("snapshot_sha256"), sha)
    _compare(problems, "counts", ann.get("counts"), outcome_counts)
    _compare(problems, "sizes", ann.get("sizes"),
             {"regular": sample_size(params.ratio, outcome_counts["venues"]),
              "blacklist": sample_size(params.blacklist_ratio, outcome_counts["blacklist"])})


def _secret(problems: Problems, bundle: Dict[str, Any], commitment: object) -> Optional[bytes]:
    text = bundle.get("secret")
    if not isinstance(text, str) or not _HEX64.match(text):
        problems.append("secret 须为 64 位小写十六进制 / secret must be 64 lowercase hex digits")
        return None
    secret = bytes.fromhex(text)
    if hashlib.sha256(secret).hexdigest() != commitment:
        problems.append("密钥与事先公布的承诺值不符 / SHA-256(secret) does not match the announced commitment")
    return secret


def _inputs(problems: Problems, bundle: Dict[str, Any]) -> Tuple[Optional[List[Tuple[str, str]]], object]:
    inputs = bundle.get("inputs")
    if not isinstance(inputs, dict) or not isinstance(inputs.get("witnesses"), list):
        problems.append("inputs 须含见证人列表 / inputs must hold a list of witnesses")
        return None, None
    witnesses = []
    for entry in inputs["witnesses"]:
        if not isinstance(entry, dict):
            problems.append("见证人条目须为对象 / each witness must be an object {name, digits}")
            return None, None
        witnesses.append((entry.get("name"), entry.get("digits")))
    if not isinstance(inputs.get("drawn_at"), str):
        problems.append("inputs 缺少抽取时间 / inputs lack drawn_at")
    return witnesses, inputs.get("beacon_value")


def _check_entries(problems: Problems, entries: List[Dict[str, Any]], state: DrawState) -> bool:
    """Apply and check each replacement in order; whether all could be applied."""
    for n, entry in enumerate(entries, 1):
        try:
            new = state.apply(entry)
        except DrawError as exc:
            problems.append(f"替换 {n} 无法执行 / replacement {n} cannot be applied: {exc}")
            return False
        approver = entry.get("approved_by")
        if not isinstance(approver, dict) or not isinstance(approver.get("badge"), str) or not approver["badge"]:
            problems.append(f"替换 {n} 缺少批准人警号 / replacement {n} lacks approved_by.badge")
        for name in ("reason", "at"):
            if not isinstance(entry.get(name), str) or not entry[name].strip():
                problems.append(f"替换 {n} 缺少 {name} / replacement {n} lacks {name}")
        _compare(problems, f"替换 {n} 的替补 / replacement {n}", entry.get("replacement"), new)
    return True


def _verify(bundle: object) -> Verification:
    problems: Problems = []
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        return Verification(False, [f"不是已知格式的抽取包 / not a known bundle format: {found!r} "
                                    f"(this verifier knows {BUNDLE_FORMAT})"])
    ann = bundle.get("announcement")
    params, problems = _params(ann)
    if params is None:
        return Verification(False, problems)
    secret = _secret(problems, bundle, ann.get("commitment"))
    try:
        snapshot = parse_snapshot(bundle.get("snapshot"))
    except SnapshotError as exc:
        return Verification(False, problems + exc.problems)
    sha = snapshot_sha256(bundle["snapshot"])
    _check_announcement(problems, ann, snapshot.counts(), sha, params)
    witnesses, beacon_value = _inputs(problems, bundle)
    if witnesses is None or secret is None:
        return Verification(False, problems)
    problems += witness_problems(witnesses, params.beacon_name, beacon_value)
    entries = bundle.get("replacements")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return Verification(False, problems + ["replacements 须为对象列表 / replacements must be a list of objects"])
    if problems:
        return Verification(False, problems)
    try:
        outcome, state = _start(snapshot, sha, params, secret, witnesses, beacon_value)
    except DrawError as exc:
        return Verification(False, [f"无法按公布的输入完成抽取 / the published inputs do not give a draw: {exc}"])
    _compare(problems, "seed", bundle.get("seed"), outcome.seed)
    _check_tickets(problems, bundle.get("tickets"), outcome.tickets)
    _compare(problems, "picks", bundle.get("picks"), outcome.picks)
    if not _check_entries(problems, entries, state):
        return Verification(False, problems)
    final = [pick.public() for pick in state.active.values()]
    _compare(problems, "final", bundle.get("final"), final)
    if not isinstance(bundle.get("published_at"), str):
        problems.append("缺少公布时间 / published_at is missing")
    return Verification(not problems, problems, final)


def verify_bundle(bundle: object) -> Verification:
    """Re-derive every value of a bundle (section 9) and compare; never raises on any JSON shape."""
    try:
        with _no_cycle_collector():
            return _verify(bundle)
    except Exception as exc:  # a verifier answers "not verified" for any input; it must not crash
        return Verification(False, [f"抽取包结构异常 / malformed bundle ({type(exc).__name__}: {exc})"])


# --- command line -------------------------------------------------------------------------------------------------

def _describe_task(bundle: Dict[str, Any], out: Any) -> None:
    """The announcement's task, plan, snapshot and sizes, and the witness inputs, as the file tells them."""
    ann = bundle.get("announcement")
    if isinstance(ann, dict):
        out.write(f"任务 / task: {ann.get('task_number')} {ann.get('task_name')}\n"
                  f"计划 / plan: {ann.get('plan_number')} {ann.get('plan_name')}  "
                  f"机关 / authority: {ann.get('authority')}\n"
                  f"快照 / snapshot: {ann.get('snapshot_sha256')} {json.dumps(ann.get('counts'))}\n"
                  f"抽取数 / sizes: {json.dumps(ann.get('sizes'))}, 每场所检查人员 / per venue: "
                  f"{ann.get('inspectors_per_venue')}\n")
    inputs = bundle.get("inputs")
    if isinstance(inputs, dict) and isinstance(inputs.get("witnesses"), list):
        told = ", ".join(f"{w.get('name')} ({w.get('digits')})" for w in inputs["witnesses"] if isinstance(w, dict))
        out.write(f"见证人 / witnesses: {told}  种子 / seed: {bundle.get('seed')}\n")


def _describe_picks(bundle: Dict[str, Any], final: List[Dict[str, Any]], out: Any) -> None:
    """Every re-derived pick with its venue name and team, then each replacement (called only once verified
    far enough for the snapshot and the replacements to have the right shapes)."""
    names = {line.split("\t")[1]: line.split("\t")[3] for line in bundle["snapshot"] if line.startswith("V\t")}
    out.write("抽中 / picks (重算 / re-derived):\n")
    for pick in final:
        out.write(f"  {pick['kind']:9} #{pick['position']:<4} {pick['credit_code']}  {names[pick['credit_code']]}  "
                  f"检查人员 / inspectors: {', '.join(pick['inspectors'])}\n")
    for n, entry in enumerate(bundle["replacements"], 1):
        out.write(f"  替换 / replacement {n}: {entry.get('kind')} {entry.get('inspector') or entry.get('venue')} -> "
                  f"{entry.get('replacement')} ({entry.get('reason')}; {entry.get('at')})\n")


class _Clean:
    """A writer that replaces control characters (a hostile bundle's terminal escapes) except newlines."""

    def __init__(self, write: Any) -> None:
        self._write = write

    def write(self, text: str) -> None:
        self._write("\n".join(_BAD_CHAR.sub("\ufffd", part) for part in text.split("\n")))


def verify_file(path: str, out: Any = None) -> int:
    """Verify the bundle file at ``path``, print the report; exit status 0 ok, 1 mismatch, 2 unreadable."""
    out = _Clean((out or sys.stdout).write)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
        if len(data) > MAX_BUNDLE_BYTES:
            raise ValueError(f"larger than {MAX_BUNDLE_BYTES} bytes")
        with _no_cycle_collector():
            bundle = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        out.write(f"无法读取抽取包 / cannot read the bundle {path}: {exc}\n")
        return 2
    verification = verify_bundle(bundle)
    if isinstance(bundle, dict):
        _describe_task(bundle, out)
    if verification.final is not None:
        _describe_picks(bundle, verification.final, out)
    if verification.ok:
        out.write("结论 / verdict: 通过，每一项均可复算 / OK, every published value re-derived\n")
        return 0
    out.write("结论 / verdict: 不通过 / FAILED\n")
    for problem in verification.problems:
        out.write(f"问题 / problem: {problem}\n")
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python3 draw_algorithm.py BUNDLE.json``."""
    import argparse

    parser = argparse.ArgumentParser(description="校验“双随机”抽取包 / verify a cafe-draw/1 bundle")
    parser.add_argument("bundle", help="抽取包 JSON 文件 / the bundle JSON file")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a console that cannot show Chinese gets "?" rather than a crash
        sys.stdout.reconfigure(errors="replace")
    return verify_file(args.bundle)


if __name__ == "__main__":
    sys.exit(main())
