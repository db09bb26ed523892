"""The registries' pages (/ui/registry): venues, inspectors and conflicts; import, export and single changes.

Every change goes through agent_api.registry (validation, audit log, credit
history); this module turns forms into those calls. An upload is read only
when the request says it is at most :data:`MAX_UPLOAD` bytes, so a huge file
is refused before a byte of it is stored anywhere; an import refused shows
every bad row (row, column, reason) and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select, union
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from agent_api import ApiError, auth, registry
from agent_api.audit import officer_actor, record
from agent_api.db import WebSession, get_db
from agent_api.dept_rules import DEFAULT_JURISDICTION, dept_rules
from agent_api.dept_tables import VENUE_STATUSES, Inspector, Venue
from agent_api.registry_io import MAX_BYTES
from agent_api.web import CSRF_REFUSED, form_data, form_text, page_session, post_session
from agent_api.web_dept import (PER_PAGE, Pager, done, form_choice, form_date, message, notice, path_part, posted,
                                refused, render, today)

__all__ = ["router", "MAX_UPLOAD", "WORDS", "known_jurisdictions"]

router = APIRouter(prefix="/ui/registry", include_in_schema=False)

# The file plus the form around it (token, kind, multipart boundaries).
MAX_UPLOAD = MAX_BYTES + 64 * 1024
TABS = {"venues": "检查对象 / Venues", "inspectors": "执法检查人员 / Inspectors", "conflicts": "回避申报 / Conflicts"}
_IMPORTS: dict[str, Callable[..., registry.ImportSummary]] = {
    "venues": registry.import_venues, "inspectors": registry.import_inspectors, "conflicts": registry.import_conflicts}
_EXPORTS: dict[str, Callable[..., bytes]] = {
    "venues": registry.export_venues, "inspectors": registry.export_inspectors, "conflicts": registry.export_conflicts}
_MEDIA = {"csv": "text/csv; charset=utf-8",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
# Words of the stored codes, for the pages ("中文 / English").
WORDS = {
    "status": {"open": "营业 / open", "closed": "停业 / closed", "revoked": "吊销（注销）/ revoked"},
    "code_check": {"ok": "校验通过 / checksum matches", "mismatch": "校验位不符，待人工确认 / check character "
                   "does not match: a person must confirm", "confirmed": "已人工确认 / confirmed by a person"},
    "credit": {"result": "检查结果 / result", "result_changed": "结果修改 / result changed",
               "blacklist_add": "列入黑名单 / blacklisted", "blacklist_remove": "移出黑名单 / off the blacklist"},
    "sex": {"male": "男 / male", "female": "女 / female"},
    "kind": {"officer": "民警 / officer", "third_party": "第三方技术人员 / third-party technician"},
}
_NOTICES = {
    "confirm": "信用代码已确认 / credit code confirmed",
    "blacklist": "黑名单状态已保存 / blacklist saved",
    "status": "经营状态已保存 / status saved",
    "venue": "场所信息已保存 / venue saved",
    "inspector": "检查人员已保存 / inspector saved",
    "conflict-add": "回避申报已登记 / conflict recorded",
    "conflict-remove": "回避申报已撤销 / conflict withdrawn",
}
_VENUE_FIELDS = ("name", "address", "legal_rep", "industry", "jurisdiction", "site_id")
_INSPECTOR_FIELDS = ("badge", "name", "sex", "unit", "post", "jurisdiction", "qualified", "kind", "active")


def known_jurisdictions(db: Session) -> list[str]:
    """Jurisdiction codes of the rules and of both registries, sorted (for filters and selects)."""
    stored = db.scalars(union(select(Venue.jurisdiction), select(Inspector.jurisdiction))).all()
    listed = set(dept_rules().jurisdictions) - {DEFAULT_JURISDICTION}
    return sorted(listed | set(stored))


# --------------------------------------------------------------------------------------------------- lists

def _rows(db: Session, tab: str, q: str, jurisdiction: str | None, page: int) -> tuple[list[Any], Pager]:
    params = tuple((k, v) for k, v in (("q", q), ("jurisdiction", jurisdiction or "")) if v)
    offset = (page - 1) * PER_PAGE
    if tab == "venues":
        total = registry.count_venues(db, jurisdiction, q)
        rows = registry.list_venues(db, jurisdiction, q, limit=PER_PAGE, offset=offset)
    elif tab == "inspectors":
        total = registry.count_inspectors(db, jurisdiction, q)
        rows = registry.list_inspectors(db, jurisdiction, q, limit=PER_PAGE, offset=offset)
    else:
        # One row more than shown tells whether there is a next page (the registry has no conflict count).
        rows = registry.list_conflicts(db, jurisdiction, limit=PER_PAGE + 1, offset=offset, **_conflict_filter(q))
        return rows[:PER_PAGE], Pager(page, None, len(rows) > PER_PAGE, params)
    return rows, Pager(page, total, offset + len(rows) < total, params)


def _conflict_filter(q: str) -> dict[str, str]:
    """A search of the conflicts: a credit code when the text is one, else a badge."""
    if not q:
        return {}
    try:
        return {"credit_code": registry.normalise_credit_code(q)}
    except ApiError:
        return {"badge": q}


def _tab_page(request: Request, db: Session, ws: WebSession, tab: str, *, q: str = "", jurisdiction: str = "",
              page: int = 1, status: int = 200, error: str = "", notice_text: str = "", problems: Any = (),
              summary: registry.ImportSummary | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
    rows, pager = _rows(db, tab, q, jurisdiction or None, page)
    context = {"section": "registry", "tab": tab, "tabs": TABS, "q": q, "jurisdiction": jurisdiction,
               "jurisdictions": known_jurisdictions(db), "rows": rows, "pager": pager, "problems": problems,
               "summary": summary, "form": form or {}, "words": WORDS, "max_mib": MAX_BYTES // (1024 * 1024),
               "unconfirmed": registry.unconfirmed_codes(db) if tab == "venues" else []}
    return render(request, ws, "dept_registry.html", context, status=status, error=error, notice_text=notice_text)


@router.get("", include_in_schema=False)
def registry_root(_ws: WebSession = Depends(page_session)) -> RedirectResponse:
    """/ui/registry itself: the venues (after the login, like every page)."""
    return RedirectResponse("/ui/registry/venues", status_code=303)


@router.get("/export/{name}")
def export(request: Request, name: str, jurisdiction: str = "", ws: WebSession = Depends(page_session),
           db: Session = Depends(get_db)) -> Response:
    """A registry as CSV or XLSX (``venues.csv``, ``inspectors.xlsx``, ...); the export is audited (personal data)."""
    tab, _, fmt = name.partition(".")
    if tab not in _EXPORTS or fmt not in _MEDIA:
        return message(request, ws, ApiError(404, "unknown_export", f"没有该导出 / no such export: {name}"),
                       "/ui/registry", "返回名录库 / back to the registries")
    data = _EXPORTS[tab](db, fmt, jurisdiction or None)
    record(db, officer_actor(ws.officer), "registry.export", f"registry:{tab}",
           {"format": fmt, "jurisdiction": jurisdiction or None, "bytes": len(data)})
    db.commit()
    return Response(data, media_type=_MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{tab}.{fmt}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


@router.get("/{tab}", response_class=HTMLResponse)
def tab_page(request: Request, tab: str, q: str = "", jurisdiction: str = "", page: str = "1", saved: str = "",
             ws: WebSession = Depends(page_session), db: Session = Depends(get_db)) -> Response:
    """One registry as a table, with search, jurisdiction filter, paging, upload and export."""
    if tab not in TABS:
        return message(request, ws, ApiError(404, "unknown_registry", f"没有该名录 / no such registry: {tab}"),
                       "/ui/registry", "返回名录库 / back to the registries")
    return _tab_page(request, db, ws, tab, q=q.strip(), jurisdiction=jurisdiction, page=Pager.number(page),
                     notice_text=notice(_NOTICES, saved))


# -------------------------------------------------------------------------------------------------- import

async def upload_form(request: Request) -> FormData | None:
    """The posted upload form, or None (unread) when the request does not say it is at most MAX_UPLOAD bytes."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_UPLOAD:
        return None
    return await request.form(max_files=1, max_fields=16)


@router.post("/import", response_class=HTMLResponse)
def post_import(request: Request, form: FormData | None = Depends(upload_form),
                db: Session = Depends(get_db)) -> Response:
    """Import one registry file (CSV or XLSX): a summary, or every bad row and nothing stored."""
    ws = page_session(request, db)
    if form is None:
        error = (f"文件过大（上限 {MAX_BYTES // (1024 * 1024)} MiB）或请求未注明大小，未保存任何内容 / the file is "
                 f"larger than {MAX_BYTES} bytes (or the request did not say its size): nothing was stored")
        return _tab_page(request, db, ws, "venues", status=413, error=error)
    token = form.get("csrf_token")
    if not auth.check_csrf(ws, token if isinstance(token, str) else None):
        raise CSRF_REFUSED
    kind = form_text(form, "kind")
    tab = kind if kind in _IMPORTS else "venues"
    upload = form.get("file")
    try:
        if kind not in _IMPORTS:
            raise ApiError(422, "bad_kind", "请选择导入的名录 / choose which registry the file holds")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise ApiError(422, "no_file", "请选择文件 / choose a file")
        data = upload.file.read(MAX_BYTES + 1)
        summary = _IMPORTS[kind](db, data, upload.filename, officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, problems: _tab_page(
            request, db, ws, tab, status=status, error=error, problems=problems))
    words = f"{TABS[kind]}：导入完成 / imported"
    return _tab_page(request, db, ws, kind, summary=summary, notice_text=words)


# -------------------------------------------------------------------------------------------------- venues

def _venue_page(request: Request, db: Session, ws: WebSession, code: str, *, status: int = 200, error: str = "",
                notice_text: str = "", problems: Any = (), form: dict[str, str] | None = None) -> HTMLResponse:
    try:
        venue = registry.get_venue(db, code)
    except ApiError as exc:
        return message(request, ws, exc, "/ui/registry/venues", "返回场所名录 / back to the venues")
    context = {"section": "registry", "venue": venue, "history": registry.credit_history(db, venue.credit_code),
               "conflicts": registry.list_conflicts(db, credit_code=venue.credit_code, limit=None),
               "problems": problems, "form": form or {}, "words": WORDS, "statuses": VENUE_STATUSES,
               "today": today(db), "jurisdictions": known_jurisdictions(db)}
    return render(request, ws, "dept_venue.html", context, status=status, error=error, notice_text=notice_text)


@router.get("/venues/{code}", response_class=HTMLResponse)
def venue_page(request: Request, code: str, saved: str = "", ws: WebSession = Depends(page_session),
               db: Session = Depends(get_db)) -> Response:
    """One venue: its fields, credit-code state, blacklist, status, conflicts and credit history."""
    return _venue_page(request, db, ws, code, notice_text=notice(_NOTICES, saved))


def _confirm(db: Session, code: str, form: FormData, actor: str) -> str:
    registry.confirm_credit_code(db, code, actor, form_text(form, "note"))
    return "confirm"


def _blacklist(db: Session, code: str, form: FormData, actor: str) -> str:
    on = form_choice(form, "blacklisted", ("1", "0"), "是否列入黑名单", "blacklist on or off") == "1"
    when = form_date(form, "on", "日期", "date", default=today(db))
    registry.set_blacklist(db, code, on, form_text(form, "reason"), when, actor)
    return "blacklist"


def _status(db: Session, code: str, form: FormData, actor: str) -> str:
    status = form_choice(form, "status", VENUE_STATUSES, "经营状态", "status")
    registry.set_status(db, code, status, form_text(form, "reason"), actor)
    return "status"


def _edit(db: Session, code: str, form: FormData, actor: str) -> str:
    registry.save_venue(db, {"credit_code": code, **{k: form_text(form, k) for k in _VENUE_FIELDS}}, actor)
    return "venue"


_VENUE_ACTIONS = {"confirm": _confirm, "blacklist": _blacklist, "status": _status, "edit": _edit}


@router.post("/venues/{code}/{action}", response_class=HTMLResponse)
def post_venue(request: Request, code: str, action: str, ws: WebSession = Depends(post_session),
               db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """A change of one venue: confirm its credit code, blacklist on/off, status, or its fields."""
    try:
        if action not in _VENUE_ACTIONS:
            raise ApiError(404, "unknown_action", f"没有该操作 / no such action: {action}")
        saved = _VENUE_ACTIONS[action](db, code, form, officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, problems: _venue_page(
            request, db, ws, code, status=status, error=error, problems=problems, form=posted(form)))
    return done(f"/ui/registry/venues/{path_part(code)}", saved, action)


# ---------------------------------------------------------------------------------------------- inspectors

def _inspector_page(request: Request, db: Session, ws: WebSession, badge: str | None, *, status: int = 200,
                    error: str = "", notice_text: str = "", problems: Any = (),
                    form: dict[str, str] | None = None) -> HTMLResponse:
    inspector = None
    if badge is not None:
        try:
            inspector = registry.get_inspector(db, badge)
        except ApiError as exc:
            return message(request, ws, exc, "/ui/registry/inspectors", "返回检查人员名录 / back to the inspectors")
    conflicts = registry.list_conflicts(db, badge=inspector.badge, limit=None) if inspector else []
    context = {"section": "registry", "inspector": inspector, "conflicts": conflicts, "problems": problems,
               "form": form or {}, "words": WORDS, "jurisdictions": known_jurisdictions(db), "today": today(db)}
    return render(request, ws, "dept_inspector.html", context, status=status, error=error, notice_text=notice_text)


@router.get("/inspectors/new", response_class=HTMLResponse)
def new_inspector(request: Request, ws: WebSession = Depends(page_session), db: Session = Depends(get_db)) -> Response:
    """The form of a new inspector."""
    return _inspector_page(request, db, ws, None)


@router.get("/inspectors/{badge:path}", response_class=HTMLResponse)
def inspector_page(request: Request, badge: str, saved: str = "", ws: WebSession = Depends(page_session),
                   db: Session = Depends(get_db)) -> Response:
    """One inspector: the edit form and the declared conflicts."""
    return _inspector_page(request, db, ws, badge, notice_text=notice(_NOTICES, saved))


def _save_inspector(request: Request, db: Session, ws: WebSession, form: FormData, badge: str | None) -> Response:
    fields = {k: form_text(form, k) for k in _INSPECTOR_FIELDS}
    if badge is not None:
        fields["badge"] = badge  # the key of the entry edited, whatever the form says
    try:
        if badge is None and fields["badge"] and _exists(db, fields["badge"]):
            raise ApiError(409, "inspector_exists", f"警号已存在 / badge already registered: {fields['badge']}")
        saved = registry.save_inspector(db, fields, officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, problems: _inspector_page(
            request, db, ws, badge, status=status, error=error, problems=problems, form=posted(form)))
    return done(f"/ui/registry/inspectors/{path_part(saved.badge)}", "inspector")


def _exists(db: Session, badge: str) -> bool:
    try:
        registry.get_inspector(db, badge)
    except ApiError:
        return False
    return True


@router.post("/inspectors/new", response_class=HTMLResponse)
def post_new_inspector(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                       form: FormData = Depends(form_data)) -> Response:
    """Add an inspector (409 when the badge is registered already: edit that one instead)."""
    return _save_inspector(request, db, ws, form, None)


@router.post("/inspectors/{badge:path}", response_class=HTMLResponse)
def post_inspector(request: Request, badge: str, ws: WebSession = Depends(post_session),
                   db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Change an inspector's entry."""
    return _save_inspector(request, db, ws, form, badge)


# ----------------------------------------------------------------------------------------------- conflicts

def _back(form: FormData) -> str:
    """Where a conflict form came from (a page of the registries only)."""
    back = form_text(form, "back")
    safe = back.startswith("/ui/registry/") and not any(bad in back for bad in ("//", "\\", "..", "#"))
    return back if safe else "/ui/registry/conflicts"


def _conflict_post(request: Request, db: Session, ws: WebSession, form: FormData,
                   change: Callable[[str], None], code: str) -> Response:
    try:
        change(officer_actor(ws.officer))
    except ApiError as exc:
        return refused(db, exc, lambda status, error, problems: _tab_page(
            request, db, ws, "conflicts", status=status, error=error, problems=problems, form=posted(form)))
    return done(_back(form), code)


@router.post("/conflicts/add", response_class=HTMLResponse)
def post_conflict_add(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                      form: FormData = Depends(form_data)) -> Response:
    """Record an inspector's declared conflict with a venue (badge, credit code, reason, date)."""
    def change(actor: str) -> None:
        declared = form_date(form, "declared_on", "申报日期", "declared on", default=today(db))
        registry.add_conflict(db, form_text(form, "badge"), form_text(form, "credit_code"),
                              form_text(form, "reason"), declared, actor)
    return _conflict_post(request, db, ws, form, change, "conflict-add")


@router.post("/conflicts/remove", response_class=HTMLResponse)
def post_conflict_remove(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db),
                         form: FormData = Depends(form_data)) -> Response:
    """Withdraw a declared conflict, with the reason."""
    def change(actor: str) -> None:
        registry.remove_conflict(db, form_text(form, "badge"), form_text(form, "credit_code"),
                                 form_text(form, "reason"), actor)
    return _conflict_post(request, db, ws, form, change, "conflict-remove")
