"""The registries (两库) and conflicts on SQLite and PostgreSQL: all-or-nothing imports naming every bad row,
credit codes checked by python-stdnum (a mismatch flagged, then confirmed), export -> import unchanged, the
blacklist's credit history, single changes for the UI, the audit log, and the CLI's refusal."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from stdnum.cn import uscc

from agent_api import ApiError
from agent_api.app import Agent, open_agent
from agent_api.audit import verify_chain
from agent_api.db import AuditEntry
from agent_api.dept_tables import Conflict, CreditEvent, Inspector, Venue
from agent_api.registry import (EntryRefused, ImportRefused, add_conflict, confirm_credit_code, count_venues,
                                credit_history, export_conflicts, export_inspectors, export_venues, get_venue,
                                import_conflicts, import_inspectors, import_venues, list_conflicts, list_inspectors,
                                list_venues, remove_conflict, save_inspector, save_venue, set_blacklist, set_status,
                                unconfirmed_codes)
from agent_api.settings import Settings
from tests.agentkit import AGENT, agent_cli

ACTOR = "officer:wang"
VENUE_HEADER = ["统一社会信用代码", "名称", "住所（经营场所）", "法定代表人（负责人）", "行业", "属地（辖区代码）", "状态",
                "黑名单", "列入黑名单原因", "列入日期"]
INSPECTOR_HEADER = ["警号", "姓名", "性别", "所在单位", "职务", "属地（辖区代码）", "执法资格", "人员类别"]
CONFLICT_HEADER = ["警号", "统一社会信用代码", "回避事由", "申报日期"]


def code(n: int) -> str:
    """A valid credit code: the check character computed by python-stdnum."""
    body = f"91350105{n:09d}"
    return body + uscc.calc_check_digit(body)


def mismatch(n: int) -> str:
    """A well-formed credit code whose check character is wrong."""
    good = code(n)
    return good[:17] + ("0" if good[17] != "0" else "1")


def csv_bytes(rows: Sequence[Sequence[str]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: Sequence[Sequence[object]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def table(fmt: str, rows: Sequence[Sequence[str]]) -> bytes:
    return csv_bytes(rows) if fmt == "csv" else xlsx_bytes(rows)


def venue_row(n: int, *, status: str = "营业", black: str = "否", reason: str = "", on: str = "",
              name: str | None = None, credit: str | None = None) -> list[str]:
    return [credit or code(n), name or f"星空网吧{n}", f"福州市马尾区江滨东大道{n}号", "张三", "互联网上网服务营业场所",
            "mawei", status, black, reason, on]


def inspector_row(badge: str, *, name: str = "王警官", sex: str = "男", unit: str = "马尾分局网安大队",
                  qualified: str = "是", kind: str = "民警") -> list[str]:
    return [badge, name, sex, unit, "民警", "mawei", qualified, kind]


@pytest.fixture()
def agent(tmp_path: Path, db_url: str) -> Iterator[Agent]:
    opened = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    yield opened
    opened.engine.dispose()


@pytest.fixture()
def db(agent: Agent) -> Iterator[Session]:
    with agent.sessions() as session:
        yield session


def seeded(db: Session) -> None:
    """Three venues (one blacklisted) and three inspectors (one third-party technician)."""
    import_venues(db, csv_bytes([VENUE_HEADER, venue_row(1), venue_row(2),
                                 venue_row(3, black="是", reason="投诉举报多", on="2026-03-02")]), "v.csv", ACTOR)
    import_inspectors(db, csv_bytes([INSPECTOR_HEADER, inspector_row("100001"), inspector_row("100002", sex="女"),
                                     inspector_row("T-01", kind="第三方", qualified="否")]), "i.csv", ACTOR)


def audit_count(db: Session) -> int:
    return db.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def snapshot(db: Session) -> list[tuple]:
    """Every registry row's content, to show that a refused import changed nothing."""
    db.expire_all()
    venues = [(v.credit_code, v.name, v.status, v.blacklisted, v.updated_at) for v in db.scalars(select(Venue))]
    inspectors = [(i.badge, i.name, i.sex, i.unit, i.updated_at) for i in db.scalars(select(Inspector))]
    conflicts = [(c.inspector_id, c.venue_id, c.reason) for c in db.scalars(select(Conflict))]
    return sorted(venues) + sorted(inspectors) + sorted(conflicts) + [("events", len(db.scalars(
        select(CreditEvent)).all()), "audit", audit_count(db))]


def refused(call, *args) -> list[tuple[int, str, str]]:
    with pytest.raises(ImportRefused) as caught:
        call(*args)
    assert caught.value.status == 422 and caught.value.code == "import_refused"
    return [(p.row, p.column, p.reason) for p in caught.value.problems]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_bad_rows_store_nothing_and_every_one_is_named(db, fmt):
    seeded(db)
    before = snapshot(db)
    inspectors = table(fmt, [
        INSPECTOR_HEADER,
        inspector_row("100001", name="改过的名字"),        # valid: would update, must not be stored
        inspector_row("100003", name=""),                   # missing field
        inspector_row("100004", sex="X"),                   # bad sex
        inspector_row("100005", unit="马尾\t大队"),          # control character
        inspector_row("100001"),                            # duplicate badge (of row 2)
        inspector_row("100006", qualified="也许"),          # bad yes/no
        inspector_row("100007"),                            # valid new one, not stored either
    ])
    assert refused(import_inspectors, db, inspectors, f"i.{fmt}", ACTOR) == [
        (3, "姓名", "必填 / required"),
        (4, "性别", "无法识别“X”，应为 男/女 / unknown value 'X': one of male/female"),
        (5, "所在单位", "含控制字符（如制表符、换行） / contains control characters (tab, newline, ...)"),
        (6, "警号", "与第 2 行重复 / duplicate of row 2"),
        (7, "执法资格", "无法识别“也许”，应为 是/否 / unknown value '也许': one of yes/no"),
    ]
    venues = table(fmt, [
        VENUE_HEADER,
        venue_row(1, name="改名网吧"),
        venue_row(10, credit="91350105MA2Y"),                    # malformed: too short
        venue_row(11, credit=code(11)[:10] + "I" + code(11)[11:]),  # malformed: a letter the code never uses
        venue_row(12, status="营业中"),
        venue_row(13, black="是"),                                # blacklisted without reason and date
        venue_row(14, black="是", reason="投诉", on="2026-02-30"),
        venue_row(15, reason="多余"),                              # a reason without the blacklist
    ])
    assert refused(import_venues, db, venues, f"v.{fmt}", ACTOR) == [
        (3, "统一社会信用代码", "长度应为 18 位，实为 12 位 / must be 18 characters, has 12"),
        (4, "统一社会信用代码", "格式错误：前 8 位为数字，其余为数字或大写字母（不含 I、O、Z、S、V） / malformed: 8 digits, "
                              "then digits or capitals other than I, O, Z, S, V"),
        (5, "状态", "无法识别“营业中”，应为 营业/停业/吊销 / unknown value '营业中': one of open/closed/revoked"),
        (6, "列入黑名单原因", "列入黑名单时必填 / required when blacklisted"),
        (6, "列入日期", "列入黑名单时必填 / required when blacklisted"),
        (7, "列入日期", "日期“2026-02-30”无效，应为 YYYY-MM-DD / invalid date '2026-02-30': YYYY-MM-DD"),
        (8, "列入黑名单原因", "未列入黑名单时应为空 / must be empty unless blacklisted"),
    ]
    conflicts = table(fmt, [
        CONFLICT_HEADER,
        ["100001", code(1), "亲属经营", "2026-01-05"],          # valid
        ["999999", code(1), "亲属经营", "2026-01-05"],          # unknown badge
        ["100001", code(99), "曾任职", "2026-01-05"],           # well-formed code not in the registry
        ["100002", "9135010", "同学", "2026-01-05"],            # malformed code
        ["100002", code(2), "", "2026-01-05"],                  # missing reason
    ])
    assert refused(import_conflicts, db, conflicts, f"c.{fmt}", ACTOR) == [
        (3, "警号", "执法检查人员名录中没有该警号 / no such badge in the inspector registry"),
        (4, "统一社会信用代码", "检查对象名录中没有该统一社会信用代码 / no such credit code in the venue registry"),
        (5, "统一社会信用代码", "长度应为 18 位，实为 7 位 / must be 18 characters, has 7"),
        (6, "回避事由", "必填 / required"),
    ]
    assert snapshot(db) == before


def test_header_any_language_any_order_unknown_and_missing_columns(db):
    english = ["Name", "credit_code", "STATUS", "address", "legal representative", "industry", "jurisdiction",
               "Blacklisted", "blacklist reason", "blacklisted on", "site id"]
    row = [f"网吧{1}", code(1).lower(), "open", "地址", "李四", "网吧", "mawei", "no", "", "", "FZ-MW-0001"]
    assert import_venues(db, csv_bytes([english, row]), "en.csv", ACTOR).added == 1
    venue = get_venue(db, code(1))
    assert (venue.name, venue.status, venue.site_id, venue.code_check) == ("网吧1", "open", "FZ-MW-0001", "ok")
    # Half-width brackets and an alias name the same columns; an unknown column and a missing one are refused.
    header = ["统一社会信用代码", "名称", "住所(经营场所)", "法定代表人", "行业", "属地", "状态", "黑名单", "电话",
              "列入日期"]
    assert refused(import_venues, db, csv_bytes([header, venue_row(2)]), "x.csv", ACTOR) == [
        (1, "电话", "未知的列 / unknown column (not in the venues registry)"),
        (1, "列入黑名单原因", "缺少必需的列 / required column missing"),
    ]


def test_checksum_mismatch_is_flagged_then_confirmed(db):
    bad = mismatch(7)
    rows = [VENUE_HEADER, venue_row(1), venue_row(7, credit=bad)]
    summary = import_venues(db, csv_bytes(rows), "v.csv", ACTOR)
    assert (summary.added, summary.flagged) == (2, [bad])
    assert [v.credit_code for v in unconfirmed_codes(db)] == [bad]
    assert get_venue(db, code(1)).code_check == "ok"
    with pytest.raises(ApiError) as not_flagged:
        confirm_credit_code(db, code(1), ACTOR, "营业执照核对")
    assert not_flagged.value.status == 409
    with pytest.raises(EntryRefused):
        confirm_credit_code(db, bad, ACTOR, "  ")
    venue = confirm_credit_code(db, bad.lower(), ACTOR, "已核对营业执照原件，代码如此")
    assert (venue.code_check, venue.code_confirmed_by) == ("confirmed", ACTOR)
    assert venue.code_confirmed_at is not None and unconfirmed_codes(db) == []
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "venue.confirm_code")).one()
    assert (entry.actor, entry.subject, json.loads(entry.detail)) == (
        ACTOR, f"venue:{bad}", {"note": "已核对营业执照原件，代码如此"})
    again = import_venues(db, csv_bytes(rows), "v.csv", ACTOR)
    assert (again.unchanged, again.flagged) == (2, [])
    assert verify_chain(db).ok


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_then_import_is_unchanged_and_formulas_are_neutralised(db, fmt):
    seeded(db)
    import_venues(db, csv_bytes([VENUE_HEADER, venue_row(4, name="=HYPERLINK(\"http://x\",\"点我\")"),
                                 venue_row(5, name="@SUM(1)", status="吊销"), venue_row(6, credit=mismatch(6))]),
                  "more.csv", ACTOR)
    save_venue(db, {"credit_code": code(2), "site_id": "FZ-MW-0002"}, ACTOR)
    save_inspector(db, {"badge": "100002", "active": "否"}, ACTOR)
    add_conflict(db, "100001", code(1), "-亲属经营", date(2026, 1, 5), ACTOR)
    exports = {"venues": export_venues(db, fmt), "inspectors": export_inspectors(db, fmt),
               "conflicts": export_conflicts(db, fmt)}
    rows = read_back(exports["venues"], fmt)
    assert rows[0] == [*VENUE_HEADER, "场所编号"]
    by_code = {row[0]: row for row in rows[1:]}
    assert by_code[code(3)][6:10] == ["营业", "是", "投诉举报多", "2026-03-02"]
    assert by_code[code(5)][1] == "'@SUM(1)" and by_code[code(5)][6] == "吊销"
    assert by_code[code(4)][1].startswith("'=HYPERLINK(") and by_code[code(2)][10] == "FZ-MW-0002"
    assert get_venue(db, code(4)).name.startswith("=HYPERLINK(")  # the stored data is never altered
    inspectors = read_back(exports["inspectors"], fmt)
    assert inspectors[0][-1] == "在岗" and ["100002", "王警官", "女"] == inspectors[2][:3]
    assert inspectors[2][-1] == "否" and inspectors[3][-2:] == ["第三方", "是"]
    assert read_back(exports["conflicts"], fmt)[1] == ["100001", code(1), "'-亲属经营", "2026-01-05"]
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(exports["venues"])).worksheets[0]
        cell = next(c for c in sheet["B"] if str(c.value).startswith("'="))
        assert cell.data_type == "s"  # text, not a formula
    else:
        assert exports["venues"].startswith(b"\xef\xbb\xbf")
    audit_before = audit_count(db)
    for importer, name in ((import_venues, "venues"), (import_inspectors, "inspectors"),
                           (import_conflicts, "conflicts")):
        summary = importer(db, exports[name], f"{name}.{fmt}", ACTOR)
        assert (summary.added, summary.updated) == (0, 0) and summary.unchanged == len(read_back(exports[name], fmt)) - 1
    assert audit_count(db) == audit_before + 3
    assert get_venue(db, code(4)).name == "=HYPERLINK(\"http://x\",\"点我\")"
    assert list_conflicts(db)[0].reason == "-亲属经营"


def read_back(data: bytes, fmt: str) -> list[list[str]]:
    if fmt == "csv":
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)]


def test_upsert_leaves_other_entries_alone_and_audits_one_entry_per_import(db):
    seeded(db)
    save_venue(db, {"credit_code": code(1), "site_id": "FZ-MW-0001"}, ACTOR)
    data = csv_bytes([VENUE_HEADER, venue_row(1, status="停业"), venue_row(2), venue_row(8)])
    summary = import_venues(db, data, "update.csv", ACTOR)
    assert (summary.added, summary.updated, summary.unchanged) == (1, 1, 1)
    assert get_venue(db, code(3)).blacklisted  # not in the file: left alone
    assert get_venue(db, code(1)).site_id == "FZ-MW-0001"  # optional column absent: left alone
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "registry.import")
                       .order_by(AuditEntry.seq.desc()).limit(1)).one()
    detail = json.loads(entry.detail)
    assert (entry.actor, entry.subject) == (ACTOR, "registry:venues")
    assert detail["file"] == "update.csv" and detail["sha256"] == hashlib.sha256(data).hexdigest()
    assert (detail["added"], detail["updated"], detail["unchanged"], detail["added_keys"]) == (1, 1, 1, [code(8)])
    assert detail["changes"] == {code(1): {"status": ["open", "closed"]}}
    assert verify_chain(db).ok


def test_blacklist_changes_write_credit_events(db):
    seeded(db)
    venue = set_blacklist(db, code(1), True, "抽查发现违法违规问题，待后续处理", date(2026, 5, 6), ACTOR,
                          task_number="MW-2026-03", result_type="发现问题待后续处理")
    assert (venue.blacklisted, venue.blacklist_reason, venue.blacklisted_on) == (
        True, "抽查发现违法违规问题，待后续处理", date(2026, 5, 6))
    assert set_blacklist(db, code(1), True, "再次", date(2026, 6, 1), ACTOR).blacklist_reason.startswith("抽查")
    with pytest.raises(ApiError) as unknown:
        set_blacklist(db, code(2), True, "原因", date(2026, 6, 1), ACTOR, result_type="不存在的结果")
    assert unknown.value.status == 422 and not get_venue(db, code(2)).blacklisted
    set_blacklist(db, code(1), False, "经进一步调查未发现问题", date(2026, 6, 2), ACTOR)
    events = [(e.kind, e.reason, e.event_on, e.task_number, e.result_type, e.recorded_by)
              for e in credit_history(db, code(1))]
    assert events == [
        ("blacklist_add", "抽查发现违法违规问题，待后续处理", date(2026, 5, 6), "MW-2026-03", "pending_followup", ACTOR),
        ("blacklist_remove", "经进一步调查未发现问题", date(2026, 6, 2), None, None, ACTOR)]
    venue = get_venue(db, code(1))
    assert (venue.blacklisted, venue.blacklist_reason, venue.blacklisted_on) == (False, None, None)
    # An import that changes the blacklist writes the same history.
    import_venues(db, csv_bytes([VENUE_HEADER, venue_row(2, black="是", reason="列入经营异常名录", on="2026-07-01"),
                                 venue_row(3)]), "black.csv", ACTOR)
    assert [(e.kind, e.reason, e.event_on) for e in credit_history(db, code(2))] == [
        ("blacklist_add", "列入经营异常名录", date(2026, 7, 1))]
    removal = credit_history(db, code(3))[-1]
    assert removal.kind == "blacklist_remove" and "black.csv" in removal.reason
    actions = [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert actions[-3:] == ["venue.blacklist", "venue.unblacklist", "registry.import"]
    assert verify_chain(db).ok


def test_single_entries_use_the_import_validator(db):
    seeded(db)
    with pytest.raises(EntryRefused) as caught:
        save_inspector(db, {"badge": "200001", "sex": "X", "phone": "1"}, ACTOR)
    assert [(p.column, p.reason_zh) for p in caught.value.problems] == [
        ("性别", "无法识别“X”，应为 男/女"), ("phone", "未知字段"), ("姓名", "必填"), ("所在单位", "必填"), ("职务", "必填"),
        ("属地（辖区代码）", "必填"), ("执法资格", "必填"), ("人员类别", "必填")]
    created = save_inspector(db, dict(zip(["badge", "name", "sex", "unit", "post", "jurisdiction", "qualified", "kind"],
                                          inspector_row("２００００１"), strict=True)), ACTOR)
    assert (created.badge, created.active) == ("200001", True)  # full-width digits folded; 在岗 defaults to 是
    save_venue(db, {"credit_code": code(2), "site_id": "FZ-MW-0002"}, ACTOR)
    with pytest.raises(EntryRefused) as taken:
        save_venue(db, {"credit_code": code(1), "site_id": "FZ-MW-0002"}, ACTOR)
    assert taken.value.problems[0].reason_zh.startswith(f"已属于 {code(2)}")
    save_venue(db, {"credit_code": code(2), "blacklisted": "是", "blacklist_reason": "屡次违规",
                    "blacklisted_on": "2026/4/1"}, ACTOR)
    assert [(e.kind, e.reason, e.event_on) for e in credit_history(db, code(2))] == [
        ("blacklist_add", "屡次违规", date(2026, 4, 1))]
    set_status(db, code(1), "注销", "已注销登记", ACTOR)
    assert get_venue(db, code(1)).status == "revoked"
    with pytest.raises(ApiError) as missing:
        get_venue(db, code(50))
    assert missing.value.status == 404
    with pytest.raises(ApiError) as malformed:
        get_venue(db, "123")
    assert malformed.value.status == 422
    add_conflict(db, "100001", code(2), "亲属经营", date(2026, 1, 5), ACTOR)
    with pytest.raises(ApiError) as twice:
        add_conflict(db, "100001", code(2), "亲属经营", date(2026, 1, 5), ACTOR)
    assert twice.value.status == 409
    assert [(c.inspector.badge, c.venue.credit_code) for c in list_conflicts(db, "mawei")] == [("100001", code(2))]
    remove_conflict(db, "100001", code(2), "已转让股份", ACTOR)
    assert list_conflicts(db) == []
    with pytest.raises(ApiError) as gone:
        remove_conflict(db, "100001", code(2), "已转让股份", ACTOR)
    assert gone.value.status == 404
    assert [v.credit_code for v in list_venues(db, "mawei", "网吧3")] == [code(3)] and count_venues(db, "mawei") == 3
    assert [i.badge for i in list_inspectors(db, query="T-")] == ["T-01"]
    actions = [e.action for e in db.scalars(select(AuditEntry).order_by(AuditEntry.seq))][2:]
    assert actions == ["inspector.create", "venue.update", "venue.update", "venue.status", "conflict.add",
                       "conflict.remove"]
    assert verify_chain(db).ok


def test_cli_refusal_lists_every_row_and_exits_1(tmp_path):
    data = tmp_path / "agent"
    where = ["--data", str(data)]
    good = tmp_path / "inspectors.csv"
    good.write_bytes(csv_bytes([INSPECTOR_HEADER, inspector_row("100001")], "gb18030"))
    assert "新增 / added 1" in agent_cli("registry", "import", "inspectors", str(good), *where)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([INSPECTOR_HEADER, inspector_row("100002", sex="X"), inspector_row("100002")]))
    proc = subprocess.run([str(AGENT), "registry", "import", "inspectors", str(bad), *where], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[:2] == ["第 2 行 [性别]: 无法识别“X”，应为 男/女 / row 2 [性别]: unknown value 'X': one of male/female",
                         "第 3 行 [警号]: 与第 2 行重复 / row 3 [警号]: duplicate of row 2"]
    assert len(lines) == 3 and lines[2].startswith("错误 / error: 导入被拒绝")
    out = tmp_path / "export.xlsx"
    agent_cli("registry", "export", "inspectors", "--format", "xlsx", "--out", str(out), *where)
    assert read_back(out.read_bytes(), "xlsx")[1][:2] == ["100001", "王警官"]
    assert agent_cli("registry", "list", "inspectors", *where).split("\t")[0] == "100001"
