"""Registry rows and files, without the database: the columns, the one validator of a row, reading and writing.

Columns: each registry's :class:`Column` list (stable key, Chinese and
English header, parser, Chinese rendering). :func:`parse_row` is the one
validator of a row, used alike for an import's rows and for an entry edited
in the UI; :func:`table_rows` turns an upload into parsed rows with every
problem named by row and column as the user sees them.

Uploads are hostile: at most :data:`MAX_BYTES` and :data:`MAX_ROWS` data rows,
the format is sniffed from the content (a ZIP is XLSX, anything else must be
CSV text), and every problem becomes an :class:`ImportRefused` listing
:class:`RowProblem` items, never a crash. CSV is UTF-8 (with or without BOM)
or GB18030, which is what a Chinese Excel's "CSV" saves; UTF-8 is tried
first, since valid UTF-8 text is almost never valid GB18030 by accident while
GB18030 accepts many byte strings. XLSX is read with openpyxl in read-only
mode with cached values only (formulas are never evaluated), first
worksheet, at most :data:`MAX_COLUMNS` columns.

Row numbers are the ones the user sees (the spreadsheet's row, the CSV
record); the header is the first non-blank row. Cells come back stripped of
surrounding spaces and with the export's injection guard undone, so an
export re-imports unchanged.

Exports guard against CSV/formula injection as OWASP suggests: a cell
starting with ``= + - @`` (or tab / carriage return) gets a leading
apostrophe, in CSV and XLSX alike; the stored data is never altered.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError

from agent_api import ApiError
from agent_api.dept_tables import Conflict, Inspector, Venue

__all__ = ["MAX_BYTES", "MAX_ROWS", "MAX_COLUMNS", "TEXT_LIMIT", "RowProblem", "ImportRefused", "EntryRefused",
           "Column", "VENUE_COLUMNS", "INSPECTOR_COLUMNS", "CONFLICT_COLUMNS", "shown", "normalise_credit_code",
           "credit_code_check", "Row", "parse_row", "require_all", "map_header", "table_rows", "flag_duplicates",
           "required_text", "ident", "Sheet", "CellProblem", "read_sheet", "read_upload", "write_csv", "write_xlsx",
           "neutralise", "column_letter"]

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 200_000
MAX_COLUMNS = 64
# What the parts of an XLSX may unpack to, all together: a 10 MiB file of
# 200,000 registry rows unpacks to ~150 MiB; more is a ZIP bomb.
MAX_UNPACKED = 512 * 1024 * 1024
MAX_ZIP_MEMBERS = 1000
# Excel keeps 15 significant digits: a longer number (an 18-digit credit code
# typed into a number cell) has already lost its last digits.
EXACT_DIGITS = 10 ** 15
_INJECTION_START = ("=", "+", "-", "@", "\t", "\r")
_SPACES = " \u3000\ufeff"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls, or an encrypted .xlsx
CellProblem = tuple[int, int, str, str]  # row, 0-based column index, zh, en
TEXT_LIMIT = 1000  # for the Text columns (reasons): a note, not a document
# Line and paragraph separators split lines too (str.splitlines), so they count as control characters here.
_LINE_BREAKS = {"\u2028", "\u2029"}
_DATE = re.compile(r"([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})|([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日")


@dataclass(frozen=True)
class RowProblem:
    """One problem of an import: ``row`` as the user sees it (0: the file as a whole), ``column`` as headed there.

    ``reason`` is "中文 / English"; ``str()`` gives "第 N 行 [列]: 原因 / row N [column]: reason".
    """

    row: int
    column: str
    reason_zh: str
    reason_en: str

    @property
    def reason(self) -> str:
        """The reason, "中文 / English"."""
        return f"{self.reason_zh} / {self.reason_en}"

    def __str__(self) -> str:
        if self.row <= 0 and not self.column:
            return self.reason
        where_zh = f"第 {self.row} 行" if self.row > 0 else ""
        where_en = f"row {self.row}" if self.row > 0 else ""
        if self.column:
            where_zh, where_en = f"{where_zh} [{self.column}]".strip(), f"{where_en} [{self.column}]".strip()
        return f"{where_zh}: {self.reason_zh} / {where_en}: {self.reason_en}"


class ImportRefused(ApiError):
    """An import refused as a whole (422): nothing was stored; ``problems`` lists every bad row."""

    def __init__(self, problems: Sequence[RowProblem], code: str = "import_refused",
                 what: tuple[str, str] = ("导入被拒绝，未保存任何内容", "import refused, nothing was stored")) -> None:
        self.problems = sorted(problems, key=lambda p: p.row)
        first = f": {self.problems[0]}" if self.problems else ""
        super().__init__(422, code, f"{what[0]}（{len(self.problems)} 处问题）/ {what[1]} "
                                    f"({len(self.problems)} problems){first}")


class EntryRefused(ImportRefused):
    """A single registry entry refused (422, ``invalid_entry``); ``problems`` name the fields (row 0)."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        super().__init__(problems, "invalid_entry", ("条目未保存", "entry not saved"))


def _file_problem(zh: str, en: str) -> ImportRefused:
    return ImportRefused([RowProblem(0, "", zh, en)])


# --- columns and their values ---------------------------------------------------------------------------------------

class _Bad(Exception):
    """A cell's value refused, with the reason in Chinese and English."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


def _fold(label: str) -> str:
    """A label as compared: NFKC (full-width brackets), case, spaces, underscores and hyphens ignored."""
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", label).casefold())


def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


@dataclass(frozen=True)
class Column:
    """One registry column: ``key`` (stable, the model attribute), ``zh`` / ``en`` headers, its parser and renderer.

    ``in_file``: an import's header must have it. ``filled``: the cell may not
    be empty (else an empty cell means ``default``). ``render`` gives the
    export's Chinese text of a stored value (营业, 是, 男, 民警, dates as ISO).
    """

    key: str
    zh: str
    en: str
    parse: Callable[[str], Any]
    render: Callable[[Any], str] = str
    in_file: bool = True
    filled: bool = True
    default: Any = None
    aliases: tuple[str, ...] = ()

    def labels(self) -> tuple[str, ...]:
        """Every header text that names this column."""
        return (self.zh, self.en, self.key, *self.aliases)


def shown(columns: Sequence[Column], key: str, value: Any) -> str:
    """A stored value as exports write it (营业, 是, 男, 民警, dates as ISO; None as empty)."""
    return "" if value is None else next(col for col in columns if col.key == key).render(value)


def normalise_credit_code(text: str) -> str:
    """A credit code in its stored form (NFKC, no spaces or hyphens, upper case); 422 when malformed.

    A wrong check character is not refused here: see :func:`credit_code_check`.
    """
    try:
        return _credit_code(text)
    except _Bad as bad:
        raise ApiError(422, "malformed_credit_code", f"统一社会信用代码“{_shown(text)}”{bad.zh} / credit code "
                                                     f"'{_shown(text)}': {bad.en}") from None


def credit_code_check(code: str) -> Literal["ok", "mismatch"]:
    """"ok" when a well-formed code's GB 32100-2015 check character matches, else "mismatch"."""
    return "ok" if uscc.is_valid(code) else "mismatch"


def _credit_code(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text)
    try:
        return uscc.validate(folded)
    except InvalidChecksum:
        return uscc.compact(folded)  # well formed: stored and flagged for a person (such codes were issued)
    except InvalidLength:
        length = len(uscc.compact(folded))
        raise _Bad(f"长度应为 18 位，实为 {length} 位", f"must be 18 characters, has {length}") from None
    except ValidationError:
        raise _Bad("格式错误：前 8 位为数字，其余为数字或大写字母（不含 I、O、Z、S、V）",
                   "malformed: 8 digits, then digits or capitals other than I, O, Z, S, V") from None


def _text(model: type, key: str) -> Callable[[str], str]:
    """A free-text parser with the column's length in the database (Text columns: TEXT_LIMIT)."""
    limit = getattr(model.__table__.c[key].type, "length", None) or TEXT_LIMIT

    def parse(value: str) -> str:
        if len(value) > limit:
            raise _Bad(f"超过 {limit} 个字符", f"longer than {limit} characters")
        return value
    return parse


def _folded_text(model: type, key: str) -> Callable[[str], str]:
    """Free text of identifiers (badge, jurisdiction): full-width digits and letters folded (NFKC)."""
    parse = _text(model, key)
    return lambda value: parse(unicodedata.normalize("NFKC", value))


def _choice(words: Mapping[Any, tuple[str, ...]]) -> tuple[Callable[[str], Any], Callable[[Any], str]]:
    """Parser and renderer of a closed set: each code's words, the first (Chinese) one being the export's."""
    lookup = {_fold(word): code for code, labels in words.items() for word in labels}
    zh = "/".join(labels[0] for labels in words.values())
    en = "/".join(labels[1] for labels in words.values())

    def parse(value: str) -> Any:
        try:
            return lookup[_fold(value)]
        except KeyError:
            raise _Bad(f"无法识别“{_shown(value)}”，应为 {zh}", f"unknown value '{_shown(value)}': one of {en}") from None
    return parse, lambda code: words[code][0]


def _date(value: str) -> date:
    match = _DATE.fullmatch(value)
    try:
        if match:
            year, month, day = (int(part) for part in match.groups() if part is not None)
            return date(year, month, day)
    except ValueError:
        pass
    raise _Bad(f"日期“{_shown(value)}”无效，应为 YYYY-MM-DD", f"invalid date '{_shown(value)}': YYYY-MM-DD")


def _render_date(value: date | None) -> str:
    return value.isoformat() if value else ""


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" or ch in _LINE_BREAKS for ch in value)


_status, _status_zh = _choice({"open": ("营业", "open", "存续", "在营", "开业"), "closed": ("停业", "closed", "歇业"),
                               "revoked": ("吊销", "revoked", "注销", "吊销（注销）")})
_yes_no, _yes_no_zh = _choice({True: ("是", "yes", "y", "true", "1"), False: ("否", "no", "n", "false", "0")})
_sex, _sex_zh = _choice({"male": ("男", "male", "m"), "female": ("女", "female", "f")})
_kind, _kind_zh = _choice({"officer": ("民警", "officer"), "third_party": ("第三方", "third_party", "第三方技术人员")})

VENUE_COLUMNS = (
    Column("credit_code", "统一社会信用代码", "credit code", _credit_code, aliases=("社会信用代码", "信用代码")),
    Column("name", "名称", "name", _text(Venue, "name"), aliases=("市场主体名称", "场所名称", "单位名称")),
    Column("address", "住所（经营场所）", "address", _text(Venue, "address"),
           aliases=("住所（经常场所）", "住所", "经营场所", "地址")),
    Column("legal_rep", "法定代表人（负责人）", "legal representative", _text(Venue, "legal_rep"),
           aliases=("法定代表人", "负责人")),
    Column("industry", "行业", "industry", _text(Venue, "industry")),
    Column("jurisdiction", "属地（辖区代码）", "jurisdiction", _folded_text(Venue, "jurisdiction"),
           aliases=("属地", "辖区", "辖区代码")),
    Column("status", "状态", "status", _status, _status_zh, aliases=("经营状态", "登记状态")),
    Column("blacklisted", "黑名单", "blacklisted", _yes_no, _yes_no_zh, aliases=("是否黑名单",)),
    Column("blacklist_reason", "列入黑名单原因", "blacklist reason", _text(Venue, "blacklist_reason"),
           lambda v: v or "", filled=False),
    Column("blacklisted_on", "列入日期", "blacklisted on", _date, _render_date, filled=False,
           aliases=("列入黑名单日期",)),
    Column("site_id", "场所编号", "site id", _folded_text(Venue, "site_id"), lambda v: v or "",
           in_file=False, filled=False),
)
INSPECTOR_COLUMNS = (
    Column("badge", "警号", "badge", _folded_text(Inspector, "badge"), aliases=("警号（编号）", "编号")),
    Column("name", "姓名", "name", _text(Inspector, "name")),
    Column("sex", "性别", "sex", _sex, _sex_zh),
    Column("unit", "所在单位", "unit", _text(Inspector, "unit"), aliases=("单位",)),
    Column("post", "职务", "post", _text(Inspector, "post")),
    Column("jurisdiction", "属地（辖区代码）", "jurisdiction", _folded_text(Inspector, "jurisdiction"),
           aliases=("属地", "辖区", "辖区代码")),
    Column("qualified", "执法资格", "qualified", _yes_no, _yes_no_zh, aliases=("执法检查资质", "资格")),
    Column("kind", "人员类别", "kind", _kind, _kind_zh, aliases=("类别",)),
    Column("active", "在岗", "active", _yes_no, _yes_no_zh, in_file=False, filled=False, default=True),
)
CONFLICT_COLUMNS = (
    Column("badge", "警号", "badge", _folded_text(Inspector, "badge")),
    Column("credit_code", "统一社会信用代码", "credit code", _credit_code, aliases=("社会信用代码", "信用代码")),
    Column("reason", "回避事由", "reason", _text(Conflict, "reason"), aliases=("事由", "回避原因")),
    Column("declared_on", "申报日期", "declared on", _date, _render_date),
)


# --- rows -----------------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One entry to save: its row number (0 for a single entry), the given cells' keys, parsed values, problems."""

    number: int
    given: set[str]
    values: dict[str, Any]
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (column key, zh, en)

    def bad(self, key: str) -> bool:
        """Whether the column ``key`` already has a problem."""
        return any(k == key for k, _, _ in self.problems)

    def flag(self, key: str, zh: str, en: str) -> None:
        """Record a problem of the column ``key``, unless it has one already."""
        if not self.bad(key):  # one problem per cell is enough
            self.problems.append((key, zh, en))

    def key(self, keys: Sequence[str]) -> tuple[Any, ...] | None:
        """The values of the ``keys`` columns, or None when one of them is missing or bad."""
        return tuple(self.values[k] for k in keys) if all(k in self.values for k in keys) else None


def parse_row(columns: Sequence[Column], number: int, cells: Mapping[str, str],
               known_bad: Sequence[tuple[str, str, str]] = ()) -> Row:
    """The one validator of a row (import) or entry (UI): every given cell parsed, every problem kept.

    ``known_bad``: problems the file reader found already (column key, zh, en); those cells are not parsed.
    """
    row = Row(number, set(cells), {}, list(known_bad))
    for col in columns:
        if col.key not in cells or row.bad(col.key):
            continue
        text = cells[col.key].strip(_SPACES)
        if _has_control(text):
            row.flag(col.key, "含控制字符（如制表符、换行）", "contains control characters (tab, newline, ...)")
        elif not text:
            if col.filled:
                row.flag(col.key, "必填", "required")
            else:
                row.values[col.key] = col.default
        else:
            try:
                row.values[col.key] = col.parse(text)
            except _Bad as bad:
                row.flag(col.key, bad.zh, bad.en)
    return row


def require_all(columns: Sequence[Column], row: Row) -> None:
    """A new entry needs every filled column (an import's header already has them; a UI entry may not)."""
    for col in columns:
        if col.filled and col.key not in row.given:
            row.flag(col.key, "必填", "required")


def map_header(columns: Sequence[Column], name: str, header_row: int,
               header: list[str]) -> tuple[dict[int, Column], list[RowProblem]]:
    """Which column each header cell names; unknown, repeated and missing columns are problems of the header row."""
    lookup = {_fold(label): col for col in columns for label in col.labels()}
    mapped: dict[int, Column] = {}
    seen: dict[str, int] = {}
    problems = []
    for index, text in enumerate(header):
        if not text:
            continue
        col = lookup.get(_fold(text))
        if col is None:
            problems.append(RowProblem(header_row, _shown(text), "未知的列",
                                       f"unknown column (not in the {name} registry)"))
        elif col.key in seen:
            other = column_letter(seen[col.key])
            problems.append(RowProblem(header_row, _shown(text), f"与 {other} 列是同一列", f"same column as column {other}"))
        else:
            seen[col.key] = index
            mapped[index] = col
    for col in columns:
        if col.in_file and col.key not in seen:
            problems.append(RowProblem(header_row, col.zh, "缺少必需的列", "required column missing"))
    return mapped, problems


def table_rows(data: bytes, columns: Sequence[Column],
               name: str) -> tuple[list[Row], dict[str, str], list[RowProblem]]:
    """An upload's rows parsed (:func:`parse_row`), the file's header text of each column key, and the problems
    of the file, its header and its cells found so far (the rows keep their own)."""
    sheet = read_sheet(data)
    mapped, problems = map_header(columns, name, sheet.header_row, sheet.header)
    headers = {col.key: sheet.header[index] for index, col in mapped.items()}
    unreadable: dict[int, list[tuple[str, str, str]]] = {}
    for number, index, zh, en in sheet.problems:
        if index in mapped and number != sheet.header_row:
            unreadable.setdefault(number, []).append((mapped[index].key, zh, en))
        else:
            problems.append(RowProblem(number, column_letter(index), zh, en))
    rows = []
    for number, cells in sheet.rows:
        by_key = {col.key: cells[index] if index < len(cells) else "" for index, col in mapped.items()}
        rows.append(parse_row(columns, number, by_key, unreadable.get(number, ())))
        for index, cell in enumerate(cells):
            if cell and index not in mapped and (index >= len(sheet.header) or not sheet.header[index]):
                problems.append(RowProblem(number, column_letter(index), "该列没有列名", "cell in a column without a header"))
    return rows, headers, problems


def flag_duplicates(rows: list[Row], key_columns: Sequence[str]) -> None:
    """Flag each row whose key repeats an earlier row's (on the key's first column)."""
    first: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = row.key(key_columns)
        if key is None:
            continue
        if key in first:
            row.flag(key_columns[0], f"与第 {first[key]} 行重复", f"duplicate of row {first[key]}")
        else:
            first[key] = row.number


def required_text(text: str, zh: str, en: str) -> str:
    """A required one-line free text (a reason, a note), or :class:`EntryRefused` naming it."""
    text = text.strip(_SPACES)
    problem = (("必填", "required") if not text else
               ("含控制字符（如制表符、换行）", "contains control characters") if _has_control(text) else
               (f"超过 {TEXT_LIMIT} 个字符", f"longer than {TEXT_LIMIT} characters") if len(text) > TEXT_LIMIT else None)
    if problem:
        raise EntryRefused([RowProblem(0, f"{zh} / {en}", *problem)])
    return text


def ident(text: str) -> str:
    """A badge (or other identifier) as stored: NFKC, without surrounding spaces."""
    return unicodedata.normalize("NFKC", text.strip(_SPACES))


# --- reading files --------------------------------------------------------------------------------------------------

@dataclass
class Sheet:
    """An uploaded table as text: the header (its row number and cells) and the non-blank data rows.

    ``problems`` are cells that could not be read (e.g. a number Excel has
    already rounded), as (row, 0-based column index, zh, en); such a cell reads
    as empty and the importer reports it under its column's header.
    """

    header_row: int
    header: list[str]
    rows: list[tuple[int, list[str]]]
    problems: list[CellProblem] = field(default_factory=list)


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def neutralise(cell: str) -> str:
    """The export form of a cell: a leading apostrophe before ``= + - @`` (tab, CR), so no sheet runs it."""
    return "'" + cell if cell.startswith(_INJECTION_START) else cell


def _unneutralise(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_INJECTION_START) else cell


def _clean(cell: str) -> str:
    return _unneutralise(cell.strip(_SPACES))


def read_upload(path: Path) -> bytes:
    """Read a file for import, at most one byte past :data:`MAX_BYTES` (the importer refuses anything longer)."""
    with path.open("rb") as fh:
        return fh.read(MAX_BYTES + 1)


def read_sheet(data: bytes) -> Sheet:
    """Parse an upload as XLSX (by its ZIP signature) or CSV text; refuse anything else with the reason.

    The content decides, never the file name: a workbook saved as "x.csv" is read as the workbook it is.
    """
    if len(data) > MAX_BYTES:
        raise _file_problem(f"文件超过 {MAX_BYTES // (1024 * 1024)} MiB", f"file larger than {MAX_BYTES} bytes")
    if not data.strip():
        raise _file_problem("文件为空", "the file is empty")
    if data.startswith(_ZIP_MAGIC):
        return _rows_to_sheet(_xlsx_rows(data))
    if data.startswith(_OLE_MAGIC):
        raise _file_problem("旧版 .xls 或加密的工作簿：请另存为 .xlsx 或 CSV（UTF-8）",
                            "legacy .xls or encrypted workbook: save it as .xlsx or CSV (UTF-8)")
    return _rows_to_sheet(_csv_rows(_decode(data)))


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _file_problem("UTF-16 文本：请另存为“CSV UTF-8（逗号分隔）”",
                            "UTF-16 text: save it as 'CSV UTF-8 (comma delimited)'")
    if b"\x00" in data:
        raise _file_problem("不是 CSV 或 XLSX 文件（含二进制内容）", "not a CSV or XLSX file (binary content)")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError:
            raise _file_problem("文件标明 UTF-8 但内容不是 UTF-8", "the file says UTF-8 but is not") from None
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _file_problem("无法识别文件编码（应为 UTF-8 或 GB18030）", "unknown text encoding (UTF-8 or GB18030 expected)")


def _csv_rows(text: str) -> Iterable[tuple[int, list[str], list[CellProblem]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            yield number, cells, []
    except csv.Error as exc:
        raise _file_problem(f"CSV 格式错误（第 {number + 1} 行附近）：{exc}",
                            f"malformed CSV near row {number + 1}: {exc}") from None


def _xlsx_rows(data: bytes) -> Iterable[tuple[int, list[str], list[CellProblem]]]:
    from openpyxl import load_workbook

    _check_zip(data)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises many kinds on a damaged file; all mean the same to the user
        raise _file_problem(f"无法读取 XLSX 文件：{type(exc).__name__}", f"cannot read the XLSX file: {exc}") from None
    try:
        if not book.worksheets:
            raise _file_problem("工作簿中没有工作表", "the workbook has no worksheet")
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # a file's stated dimensions may lie; read what is there
        try:
            # One column past the cap, so that content beyond it is seen and refused.
            for number, values in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS + 1, values_only=True), start=1):
                problems: list[CellProblem] = []
                cells = [_xlsx_text(number, index, value, problems) for index, value in enumerate(values)]
                yield number, cells, problems
        except ImportRefused:
            raise
        except Exception as exc:
            raise _file_problem(f"XLSX 文件内容损坏：{type(exc).__name__}", f"damaged XLSX content: {exc}") from None
    finally:
        book.close()


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _file_problem(f"损坏的 XLSX（ZIP）文件：{exc}", f"damaged XLSX (ZIP) file: {exc}") from None
    if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > MAX_UNPACKED:
        raise _file_problem("XLSX 解压后过大", "the XLSX file unpacks to too much data")


def _xlsx_text(row: int, index: int, value: Any, problems: list[CellProblem]) -> str:
    """A cell's value as the text the user typed; numbers Excel has rounded are refused."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) >= EXACT_DIGITS:
            problems.append((row, index, "数字超过 15 位，Excel 已丢失精度：请把该列设为文本",
                             "a number of more than 15 digits has lost precision in Excel: format the column as text"))
            return ""
        return str(int(value)) if float(value).is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _rows_to_sheet(rows: Iterable[tuple[int, list[str], list[CellProblem]]]) -> Sheet:
    sheet: Sheet | None = None
    for number, raw, problems in rows:
        cells = [_clean(cell) for cell in raw]
        if sheet is None:
            if problems or any(cells):
                sheet = Sheet(number, _trim(cells), [], list(problems))
                if len(sheet.header) > MAX_COLUMNS:
                    raise _file_problem(f"超过 {MAX_COLUMNS} 列", f"more than {MAX_COLUMNS} columns")
            continue
        sheet.problems.extend(problems)
        if any(cells) or problems:
            if len(sheet.rows) >= MAX_ROWS:
                raise _file_problem(f"超过 {MAX_ROWS} 行数据", f"more than {MAX_ROWS} data rows")
            sheet.rows.append((number, _trim(cells)))
    if sheet is None:
        raise _file_problem("文件中没有表头和数据", "the file holds no header and no data")
    return sheet


def _trim(cells: list[str]) -> list[str]:
    """Cells without the empty ones at the end (spreadsheets pad rows to the widest one)."""
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return cells[:end]


# --- writing files --------------------------------------------------------------------------------------------------

def write_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """CSV for Excel: UTF-8 with BOM, CRLF line ends, every cell guarded against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralise(cell) for cell in header])
    writer.writerows([neutralise(cell) for cell in row] for row in rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def write_xlsx(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """One worksheet (openpyxl write-only), every cell a text cell guarded against formula injection."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])  # Excel's limit on sheet names
    sheet.append([neutralise(cell) for cell in header])
    for row in rows:
        sheet.append([neutralise(cell) for cell in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
