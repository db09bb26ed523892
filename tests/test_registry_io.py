"""Registry uploads are hostile: encodings (UTF-8, BOM, GB18030), XLSX cells (rounded numbers, unevaluated
formulas, dates), limits (size, rows, unpacked size), damaged and random files: always a clean refusal."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from agent_api import registry_io
from agent_api.dept_tables import Venue
from agent_api.registry import ImportRefused, get_venue, import_inspectors, import_venues
from agent_api.registry_io import MAX_BYTES, RowProblem, neutralise, read_sheet
from tests.test_registry import (ACTOR, INSPECTOR_HEADER, VENUE_HEADER, agent, code, csv_bytes, db, inspector_row,
                                 refused, venue_row, xlsx_bytes)

__all__ = ["agent", "db"]  # the fixtures, shared with tests.test_registry


def file_problem(call, *args) -> str:
    """The one problem of a file refused as a whole."""
    with pytest.raises(ImportRefused) as caught:
        call(*args)
    [problem] = caught.value.problems
    assert (problem.row, problem.column) == (0, "") and str(problem) == problem.reason
    return problem.reason


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_in_utf8_with_or_without_bom_and_gb18030(db, encoding):
    data = csv_bytes([VENUE_HEADER, venue_row(1, name="马尾区星空网吧（江滨店）")], encoding)
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    assert import_venues(db, data, "v.csv", ACTOR).added == 1
    assert get_venue(db, code(1)).name == "马尾区星空网吧（江滨店）"


def test_xlsx_cells_numbers_dates_and_formulas(db):
    data = xlsx_bytes([
        INSPECTOR_HEADER,
        [100001, "王警官", "男", "马尾分局", "民警", "mawei", True, "民警"],      # a number badge, a boolean
        [913501050000000001, "李警官", "女", "马尾分局", "民警", "mawei", "是", "民警"],  # 18 digits: rounded by Excel
        ["100003", "=\"张\"&\"三\"", "男", "马尾分局", "民警", "mawei", "是", "民警"],     # a formula is never evaluated
    ])
    assert refused(import_inspectors, db, data, "i.xlsx", ACTOR) == [
        (3, "警号", "数字超过 15 位，Excel 已丢失精度：请把该列设为文本 / a number of more than 15 digits has lost "
                   "precision in Excel: format the column as text"),
        (4, "姓名", "必填 / required"),
    ]
    dated = xlsx_bytes([VENUE_HEADER, [*venue_row(1)[:7], "是", "投诉", datetime(2026, 3, 2)]])
    assert import_venues(db, dated, "named-like-a.csv", ACTOR).added == 1  # the content decides
    assert get_venue(db, code(1)).blacklisted_on.isoformat() == "2026-03-02"


def test_header_is_the_first_non_blank_row_and_headerless_cells_are_refused(db):
    data = b"\r\n,,\r\n" + csv_bytes([INSPECTOR_HEADER, inspector_row("100001"), [*inspector_row("100002"), "", "x"]])
    assert refused(import_inspectors, db, data, "i.csv", ACTOR) == [
        (5, "J", "该列没有列名 / cell in a column without a header")]


def test_refused_files(db, monkeypatch):
    assert "10 MiB" in file_problem(import_venues, db, b"a," * (MAX_BYTES // 2 + 1), "big.csv", ACTOR)
    assert "empty" in file_problem(import_venues, db, b" \r\n", "empty.csv", ACTOR)
    assert "binary" in file_problem(import_venues, db, b"\x89PNG\r\n\x1a\n\x00\x00", "x.png", ACTOR)
    assert ".xls" in file_problem(import_venues, db, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "a.xls",
                                  ACTOR)
    assert "UTF-16" in file_problem(import_venues, db, "名称".encode("utf-16"), "u.csv", ACTOR)
    assert "ZIP" in file_problem(import_venues, db, b"PK\x03\x04garbage", "v.xlsx", ACTOR)
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("a.txt", "not a workbook")
    assert "XLSX" in file_problem(import_venues, db, plain_zip.getvalue(), "v.xlsx", ACTOR)
    assert "malformed CSV near row 2" in file_problem(import_venues, db, b'a,b\r\n"x"y,z\r\n', "q.csv", ACTOR)
    workbook = xlsx_bytes([VENUE_HEADER, venue_row(1)])
    monkeypatch.setattr(registry_io, "MAX_UNPACKED", 1000)
    assert "unpacks to too much" in file_problem(import_venues, db, workbook, "v.xlsx", ACTOR)
    monkeypatch.setattr(registry_io, "MAX_ROWS", 2)
    rows = csv_bytes([VENUE_HEADER, venue_row(1), venue_row(2), venue_row(3)])
    assert "more than 2 data rows" in file_problem(import_venues, db, rows, "v.csv", ACTOR)
    assert get_venue_count(db) == 0


def get_venue_count(db) -> int:
    return db.execute(select(func.count()).select_from(Venue)).scalar_one()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(junk=st.binary(max_size=2000), cells=st.lists(st.lists(st.text(max_size=30), max_size=12), max_size=5))
def test_random_bytes_and_random_cells_are_refused_cleanly(db, junk, cells):
    for data in (junk, b"PK\x03\x04" + junk, csv_bytes([VENUE_HEADER, *cells])):
        try:
            import_venues(db, data, "fuzz.csv", ACTOR)
        except ImportRefused as exc:
            assert exc.problems and all(isinstance(p, RowProblem) for p in exc.problems)


def test_neutralise_and_sheet_reading_undo_it():
    assert [neutralise(v) for v in ["=1+1", "+86", "-", "@A1", "\tx", "安全", ""]] == [
        "'=1+1", "'+86", "'-", "'@A1", "'\tx", "安全", ""]
    sheet = read_sheet(b"a,b\r\n'=1+1,'abc\r\n")
    assert (sheet.header_row, sheet.header, sheet.rows) == (1, ["a", "b"], [(2, ["=1+1", "'abc"])])
