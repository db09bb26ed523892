"""Demo registries for the department side: a fictional district's venues, inspectors and conflicts as CSV files.

The files are what a department would import (``cafe-agent registry import``):
Chinese headers, UTF-8, one row per entry. Every name is made up; credit
codes are well formed with their GB 32100-2015 check character computed by
python-stdnum, except the one venue whose code deliberately fails the
checksum (issued codes like that exist, and the import must flag it for a
person to confirm). Content is a pure function of the arguments, so two
calls give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from stdnum.cn import uscc

__all__ = ["DemoRegistries", "write_demo_registries", "VENUE_HEADERS", "INSPECTOR_HEADERS", "CONFLICT_HEADERS"]

VENUE_HEADERS = ["统一社会信用代码", "名称", "住所（经营场所）", "法定代表人（负责人）", "行业", "属地（辖区代码）",
                 "状态", "黑名单", "列入黑名单原因", "列入日期", "场所编号"]
INSPECTOR_HEADERS = ["警号", "姓名", "性别", "所在单位", "职务", "属地（辖区代码）", "执法资格", "人员类别", "在岗"]
CONFLICT_HEADERS = ["警号", "统一社会信用代码", "回避事由", "申报日期"]

_PREFIXES = ["星际", "极速", "蓝海", "云端", "天马", "飞鱼", "银河", "竞界", "量子", "北斗", "光年", "灵动"]
_SUFFIXES = ["网咖", "电竞馆", "网络会所", "网吧"]
_STREETS = ["儒江西路", "江滨东大道", "君竹路", "沿山路", "快安大道", "船政路", "亭江路", "罗星路"]
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "军", "涛", "明", "超", "霞", "平"]
_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015 alphabet (no I, O, S, V, Z)
# The lab cafés' profile venue ids: a report from a lab run links to these registry entries.
LAB_SITES = {1: "LAB-MESSY-0250", 2: "LAB-SMALL-0030"}


@dataclass(frozen=True)
class DemoRegistries:
    """Where the files were written and what is in them."""

    venues: Path
    inspectors: Path
    conflicts: Path
    venue_count: int
    blacklisted: int
    inspector_count: int
    mismatch_code: str  # the one credit code whose check character is wrong


def _pick(seq: list[str] | str, key: str) -> str:
    """A stable choice from ``seq`` for ``key`` (no random module: the files must be reproducible)."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return seq[h % len(seq)]


def credit_code(region: str, serial: int) -> str:
    """A well-formed unified social credit code (category 92: 个体工商户) with its check character."""
    body = "92" + region
    n = serial
    tail = ""
    for _ in range(9):
        n, r = divmod(n, len(_CHARS))
        tail = _CHARS[r] + tail
    stem = body + tail
    return stem + uscc.calc_check_digit(stem)


def _wrong_check(code: str) -> str:
    right = code[-1]
    return code[:-1] + next(c for c in _CHARS if c != right)


def _csv(headers: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_demo_registries(out: Path, *, jurisdiction: str = "FZ-MW", region: str = "350105", venues: int = 60,
                          blacklisted: int = 6, inspectors: int = 8, closed: int = 2,
                          site_ids: dict[int, str] | None = None) -> DemoRegistries:
    """Write venues.csv, inspectors.csv and conflicts.csv for one district into ``out``.

    ``venues`` open ones plus ``closed`` closed ones; the first ``blacklisted``
    open venues (by number) carry a blacklist flag; venue 3's code fails the
    checksum. ``site_ids`` maps a venue number (1-based) to the ``venue.id``
    of its probe profile, so that a probe's report links to it.
    """
    if venues < 1 or inspectors < 1 or not 0 <= blacklisted <= venues:
        raise ValueError("venues and inspectors must be at least 1, blacklisted between 0 and venues")
    out.mkdir(parents=True, exist_ok=True)
    site_ids = LAB_SITES if site_ids is None else site_ids
    listed_on = date(2026, 3, 2)
    venue_rows, codes = [], []
    for n in range(1, venues + closed + 1):
        code = credit_code(region, 700000 + n * 37)
        mismatch = n == 3
        if mismatch:
            code = _wrong_check(code)
        codes.append(code)
        name = f"{_pick(_PREFIXES, f'p{n}')}{_pick(_SUFFIXES, f's{n}')}（{n:03d}店）"
        address = f"福州市马尾区{_pick(_STREETS, f'a{n}')}{(n * 7) % 300 + 1}号"
        owner = _pick(_SURNAMES, f'o{n}') + _pick(_GIVEN, f'g{n}')
        status = "营业" if n <= venues else "停业"
        black = n <= blacklisted
        venue_rows.append([code, name, address, owner, "互联网上网服务", jurisdiction, status,
                           "是" if black else "否", "投诉举报多，曾有严重违法违规记录" if black else "",
                           (listed_on + timedelta(days=n)).isoformat() if black else "", site_ids.get(n, "")])
    units = ["福州市公安局马尾分局网安大队", "福州市公安局马尾分局治安大队"]
    inspector_rows = []
    badges = []
    for n in range(1, inspectors + 1):
        badge = f"3501{n:05d}"
        badges.append(badge)
        name = _pick(_SURNAMES, f'i{n}') + _pick(_GIVEN, f'j{n}') + _pick(_GIVEN, f'k{n}')
        inspector_rows.append([badge, name, "男" if n % 3 else "女", _pick(units, f'u{n}'),
                               "民警" if n % 4 else "副大队长", jurisdiction, "是", "民警", "是"])
    # A third-party technician: listed in the registry, never in a draw's pool.
    inspector_rows.append(["TP0001", "技术支持人员", "男", "某网络安全技术服务公司", "技术员", jurisdiction, "否",
                           "第三方", "是"])
    conflict_rows = [[badges[0], codes[4], "近亲属经营", "2026-01-05"],
                     [badges[1 % len(badges)], codes[9 % len(codes)], "曾在该场所任职", "2026-02-11"]]
    paths = (out / "venues.csv", out / "inspectors.csv", out / "conflicts.csv")
    paths[0].write_bytes(_csv(VENUE_HEADERS, venue_rows))
    paths[1].write_bytes(_csv(INSPECTOR_HEADERS, inspector_rows))
    paths[2].write_bytes(_csv(CONFLICT_HEADERS, conflict_rows))
    return DemoRegistries(venues=paths[0], inspectors=paths[1], conflicts=paths[2], venue_count=venues + closed,
                          blacklisted=blacklisted, inspector_count=inspectors + 1, mismatch_code=codes[2])
