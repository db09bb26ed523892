"""Public disclosure: the publicity system's fields, exactly, in CSV, XLSX and JSON; published results only."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

from openpyxl import load_workbook
from typer.testing import CliRunner

from agent_api.app import open_agent
from agent_api.audit import CLI, now
from agent_api.cli import app as cli
from agent_api.disclosure import HEADERS_ZH, disclosure_rows, export_disclosure
from agent_api.plans import create_plan
from agent_api.results import change_result, publish_results, record_result
from agent_api.settings import Settings
from tests import test_plans
from tests.test_plans import _refused, add_draw
from tests.test_results import add_pick, add_venue, credit_code

db = test_plans.db  # the session fixture: a fresh agent database, SQLite and PostgreSQL

HEADER = ["抽查计划编号", "抽查计划名称", "抽查任务编号", "抽查任务名称", "抽查类型", "检查实施机关", "检查对象名称",
          "统一社会信用代码", "检查完成日期", "检查结果", "备注"]
REASON = "经进一步调查，系实名登记系统故障，不存在违法行为"


def _published_world(db) -> dict[str, object]:
    """Two plans; three published results (one changed later), one recorded but not published."""
    mawei = create_plan(db, "FZ-MW", 2026, CLI, name="马尾区2026年度网吧抽查计划")
    draw = add_draw(db, mawei, 1, "published")
    venues = [add_venue(db, 1, "星空网咖"), add_venue(db, 2, "蓝海网吧"), add_venue(db, 3, "极速网咖")]
    picks = [add_pick(db, draw, v) for v in venues]
    record_result(db, picks[0].id, "no_problem", date(2026, 3, 10), "", CLI)
    record_result(db, picks[1].id, "发现问题待后续处理", date(2026, 3, 11), "=HYPERLINK(\"http://x\")", CLI)
    publish_results(db, draw.id, CLI)
    change_result(db, picks[1].result.id, "no_problem", REASON, CLI)
    record_result(db, picks[2].id, "corrected", date(2026, 3, 12), "未公示", CLI)

    puyang = create_plan(db, "PY", 2026, CLI)
    directed = add_draw(db, puyang, 1, "drawn", check_type="directed")
    pick = add_pick(db, directed, add_venue(db, 4, "濮阳网城"))
    record_result(db, pick.id, "corrected", date(2026, 3, 13), "当场整改", CLI)
    publish_results(db, directed.id, CLI)
    return {"changed_on": now(db).date().isoformat(), "puyang": puyang}


def _expected(world) -> list[list[str]]:
    puyang = world["puyang"]
    task = ["FZ-MW-2026", "马尾区2026年度网吧抽查计划", "FZ-MW-2026-R01", "马尾区2026年度网吧抽查计划第1轮", "不定向",
            "福州市公安局马尾分局"]
    return [
        task + ["星空网咖", credit_code(1), "2026-03-10", "未发现问题", ""],
        task + ["蓝海网吧", credit_code(2), "2026-03-11", "未发现问题",
                f"=HYPERLINK(\"http://x\")；原结果“发现问题待后续处理”，经进一步调查于 {world['changed_on']} 修改：{REASON}"],
        ["PY-2026", puyang.name, "PY-2026-R01", f"{puyang.name}第1轮", "定向", "濮阳县公安局",
         "濮阳网城", credit_code(4), "2026-03-13", "发现问题已责令改正", "当场整改"],
    ]


def _guarded(rows: list[list[str]]) -> list[list[str]]:
    # Spreadsheet exports neutralise formulas; the JSON keeps the text as recorded.
    return [[("'" + cell) if cell.startswith("=") else cell for cell in row] for row in rows]


PERSONAL = ["法人1", "法人2", "法人4", "江滨东大道", "350101", "350102"]


def test_csv_xlsx_and_json_hold_exactly_the_published_rows(db):
    world = _published_world(db)
    expected = _expected(world)
    assert list(HEADERS_ZH) == HEADER

    data = export_disclosure(db, "csv")
    assert data.startswith(b"\xef\xbb\xbf" + ",".join(HEADER).encode("utf-8") + b"\r\n")
    assert list(csv.reader(io.StringIO(data[3:].decode("utf-8")))) == [HEADER, *_guarded(expected)]

    book = load_workbook(io.BytesIO(export_disclosure(db, "xlsx")), read_only=True)
    sheet = book.worksheets[0]
    assert sheet.title == "抽查结果公示"
    assert [[c if c is not None else "" for c in row] for row in sheet.iter_rows(values_only=True)] == \
        [HEADER, *_guarded(expected)]
    book.close()

    doc = json.loads(export_disclosure(db, "json"))
    assert [list(item) for item in doc] == [["plan_number", "plan_name", "task_number", "task_name", "check_type",
                                             "authority", "venue_name", "credit_code", "completed_on", "result",
                                             "remark", "result_type", "check_type_zh"]] * 3
    assert [[item[k] for k in ("plan_number", "plan_name", "task_number", "task_name", "check_type_zh",
                               "authority", "venue_name", "credit_code", "completed_on", "result", "remark")]
            for item in doc] == expected
    assert [(item["check_type"], item["result_type"]) for item in doc] == \
        [("undirected", "no_problem"), ("undirected", "no_problem"), ("directed", "corrected")]

    for fmt in ("csv", "json"):
        text = export_disclosure(db, fmt).decode("utf-8-sig")
        assert "极速网咖" not in text and "未公示" not in text  # recorded, not published
        assert not [word for word in PERSONAL if word in text]


def test_filters_and_the_unpublished_preview(db):
    _published_world(db)
    assert [r.venue_name for r in disclosure_rows(db, jurisdiction="PY")] == ["濮阳网城"]
    assert [r.venue_name for r in disclosure_rows(db, year=2025)] == []
    assert [r.venue_name for r in disclosure_rows(db, published_only=False, jurisdiction="FZ-MW")] == \
        ["星空网咖", "蓝海网吧", "极速网咖"]
    _refused(422, "bad_format", export_disclosure, db, "pdf")


def test_cli_disclosure_export(tmp_path, db_url):
    agent = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    with agent.sessions() as session:
        world = _published_world(session)
    agent.engine.dispose()
    runner = CliRunner()
    opts = ["--data", str(tmp_path / "agent"), "--db", db_url]
    out = tmp_path / "公示.csv"
    done = runner.invoke(cli, ["disclosure", "export", "--format", "csv", "--out", str(out), "--jurisdiction",
                               "FZ-MW", *opts])
    assert done.exit_code == 0, done.output
    rows = list(csv.reader(io.StringIO(out.read_bytes()[3:].decode("utf-8"))))
    assert rows == [HEADER, *_guarded(_expected(world))[:2]]
    none = runner.invoke(cli, ["disclosure", "export", "--format", "json", "--out", str(tmp_path / "x.json"),
                               "--year", "2025", *opts])
    assert none.exit_code == 0 and json.loads((tmp_path / "x.json").read_text(encoding="utf-8")) == []
    bad = runner.invoke(cli, ["disclosure", "export", "--format", "pdf", "--out", str(tmp_path / "x"), *opts])
    assert bad.exit_code == 1 and "csv, xlsx, json" in bad.stderr
