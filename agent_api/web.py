"""The officers' web UI under /ui: log in, read reports, record manual items, choose the result, sign off.

Server-rendered (Jinja2, no JavaScript), Chinese first, sized for a tablet.
The rules of a case (what may change when, who may sign) live in
agent_api.cases; this module turns forms into those calls and their refusals
into messages on the page.

Protection: every page needs a live session (else a redirect to the login
page); every form post carries the session's CSRF token (else 403); the login
form, which has no session yet, uses a double-submit cookie instead. A
Content-Security-Policy without scripts backs the template autoescaping up:
report text came over the network.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from agent_api import ApiError, auth, cases
from agent_api.api import export_case
from agent_api.audit import officer_actor, record
from agent_api.casefile import RunWarning, case_context, jinja_env, run_warnings
from agent_api.db import MANUAL_STATUSES, WebSession, get_db

__all__ = ["router", "templates", "LOGIN_PATH", "MAX_NOTE", "SECURITY_HEADERS", "CSRF_REFUSED", "page_session",
           "post_session", "form_data", "render_page", "base_context", "form_text"]

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(env=jinja_env())

LOGIN_PATH = "/ui/login"
LOGIN_CSRF_COOKIE = "cafe_login_csrf"
MAX_NOTE = 2000

# No script may run, styles and forms stay on this device, nobody may frame
# the sign-off form.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Case data on a shared tablet: keep it out of the browser cache.
    "Cache-Control": "no-store",
}

# Messages after a successful post (redirect, then shown once): fixed words
# chosen by a code, so nothing from the query string reaches the page.
_NOTICES = {
    "manual": "人工检查项已保存 / items saved",
    "manual-none": "没有需要保存的更改 / nothing to save",
    "result": "检查结果类型已保存 / result type saved",
    "signed": "已签署，还需另一名检查人员签署 / signed; a second officer must sign",
    "locked": "两名检查人员已签署，案卷已锁定 / signed by two officers: the case is locked",
}

CSRF_REFUSED = ApiError(403, "csrf_refused", "表单令牌无效或已过期，请返回并刷新页面后重试 / "
                                             "the form token is missing, wrong or stale: reload the page and retry")


def _login_redirect() -> ApiError:
    # Raised from dependencies; the app's ApiError handler keeps the headers,
    # so the browser follows the Location to the login page.
    return ApiError(303, "login_required", "请先登录 / log in first", headers={"Location": LOGIN_PATH})


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status, headers=_HEADERS)


def _session_or_none(request: Request, db: Session) -> WebSession | None:
    return auth.session_for_token(db, request.cookies.get(auth.COOKIE_NAME))


def page_session(request: Request, db: Session = Depends(get_db)) -> WebSession:
    """Dependency of every page: the live browser session, else a redirect to the login page."""
    ws = _session_or_none(request, db)
    if ws is None:
        raise _login_redirect()
    return ws


async def form_data(request: Request) -> FormData:
    """The posted form (read once, in the event loop; handlers run in the thread pool)."""
    return await request.form()


def post_session(request: Request, db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> WebSession:
    """Dependency of every form post: a live session (else login) and its CSRF token in the form (else 403)."""
    ws = page_session(request, db)
    token = form.get("csrf_token")
    if not auth.check_csrf(ws, token if isinstance(token, str) else None):
        raise CSRF_REFUSED
    return ws


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _base(ws: WebSession) -> dict[str, Any]:
    return {"officer": ws.officer, "csrf_token": ws.csrf_token}


# The same pieces under public names, for the department pages (agent_api.web_*) and the public pages
# (agent_api.public): one set of headers, one way to render, read a form field and fill the page frame.
SECURITY_HEADERS = _HEADERS
render_page = _page
form_text = _text
base_context = _base


# ------------------------------------------------------------------- login


def _login_page(request: Request, status: int = 200, error: str = "", username: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = _page(request, "login.html", {"login_csrf": token, "error": error, "username": username}, status)
    # Double-submit: a cross-site form cannot read this cookie to copy it into
    # the form; SameSite=Strict keeps it from being sent cross-site at all.
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path=LOGIN_PATH, httponly=True, samesite="strict")
    return response


@router.get("", include_in_schema=False)
def ui_root() -> RedirectResponse:
    """/ui itself: the report list."""
    return RedirectResponse("/ui/reports", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, db: Session = Depends(get_db)) -> Response:
    """The login form (or straight to the reports when already logged in)."""
    if _session_or_none(request, db) is not None:
        return RedirectResponse("/ui/reports", status_code=303)
    return _login_page(request)


@router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Check the credentials; on success set the session cookie and go to the reports."""
    cookie, posted = request.cookies.get(LOGIN_CSRF_COOKIE), form.get("login_csrf")
    username, password = _text(form, "username"), form.get("password")
    if not (cookie and isinstance(posted, str) and secrets.compare_digest(cookie, posted)):
        # Refused, but as the form again: the usual cause is a login page left
        # open in another tab, not an attack.
        return _login_page(request, 403, "登录表单已失效，请重新输入密码 / the login form expired: enter the "
                                         "password again", username)
    result = auth.login(db, username, password) if username and isinstance(password, str) and password else None
    if result is None:
        return _login_page(request, 401, "用户名或密码错误 / wrong username or password", username)
    _officer, token, _csrf = result
    response = RedirectResponse("/ui/reports", status_code=303)
    auth.set_session_cookie(response, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
    return response


@router.post("/logout")
def logout(request: Request, ws: WebSession = Depends(post_session), db: Session = Depends(get_db)) -> Response:
    """End the session and forget the cookie."""
    auth.end_session(db, request.cookies.get(auth.COOKIE_NAME))
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    auth.clear_session_cookie(response)
    return response


# ----------------------------------------------------------------- reports

# Order of the status counts in the list: what needs attention first.
STATUS_ORDER = ("fail", "inconclusive", "pass", "manual", "not_applicable")


@router.get("/reports", response_class=HTMLResponse)
def report_list(request: Request, ws: WebSession = Depends(page_session), db: Session = Depends(get_db)) -> Response:
    """Every stored report, newest received first."""
    rows = cases.list_reports(db)
    return _page(request, "reports.html", {**_base(ws), "rows": rows, "status_order": STATUS_ORDER,
                                           "warnings": _list_warnings(rows)})


def _list_warnings(rows: list[cases.ReportSummary]) -> dict[str, list[RunWarning]]:
    """Per listed report, the run warnings its signed payload calls for (interrupted, clock error)."""
    found = {r.report_id: run_warnings(r.complete, r.incomplete_reason, r.clock) for r in rows}
    return {rid: w for rid, w in found.items() if w}


def _detail(request: Request, db: Session, ws: WebSession, report_id: str, *, status: int = 200,
            error: str = "", notice: str = "") -> HTMLResponse:
    case = cases.load_case(db, report_id)
    context = {**_base(ws), **case_context(case), "error": error, "notice": notice,
               "result_types": cases.result_type_options(), "manual_statuses": MANUAL_STATUSES,
               "max_note": MAX_NOTE}
    return _page(request, "report.html", context, status)


def _message(request: Request, ws: WebSession, exc: ApiError) -> HTMLResponse:
    return _page(request, "message.html", {**_base(ws), "error": exc.message}, exc.status)


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_detail(request: Request, report_id: str, saved: str = "", ws: WebSession = Depends(page_session),
                  db: Session = Depends(get_db)) -> Response:
    """One report: findings, evidence, manual items, result type, sign-offs and its audit entries."""
    try:
        return _detail(request, db, ws, report_id, notice=_NOTICES.get(saved, ""))
    except ApiError as exc:
        return _message(request, ws, exc)


def _done(report_id: str, what: str, anchor: str) -> RedirectResponse:
    return RedirectResponse(f"/ui/reports/{report_id}?saved={what}#{anchor}", status_code=303)


def _refused(request: Request, db: Session, ws: WebSession, report_id: str, exc: ApiError) -> HTMLResponse:
    # The page again, with the refusal on top and the status of the refusal:
    # the officer sees what to fix without losing the case from view.
    db.rollback()
    try:
        return _detail(request, db, ws, report_id, status=exc.status, error=exc.message)
    except ApiError as missing:
        return _message(request, ws, missing)


def manual_changes(form: Mapping[str, Any], items: list[cases.ManualItemView]) -> list[tuple[str, str, str]]:
    """(item id, status, note) for every item the form changes; ApiError 422 when an entry is unusable.

    An item without a chosen status keeps its recorded one (a note can be
    edited alone); an unrecorded item with a note but no status is refused.
    """
    changes, problems = [], []
    for item in items:
        status, note = form.get(f"status__{item.item_id}"), form.get(f"note__{item.item_id}")
        status = status if isinstance(status, str) and status else item.status
        note = note.strip() if isinstance(note, str) else item.note
        if len(note) > MAX_NOTE:
            problems.append(f"{item.title_zh}：说明超过 {MAX_NOTE} 字 / note longer than {MAX_NOTE} characters")
        elif status is None:
            if note:
                problems.append(f"{item.title_zh}：请选择结果 / choose a result for {item.item_id}")
        elif status not in MANUAL_STATUSES:
            problems.append(f"{item.title_zh}：结果无效 / invalid result for {item.item_id}")
        elif (status, note) != (item.status, item.note):
            changes.append((item.item_id, status, note))
    if problems:
        raise ApiError(422, "bad_manual_items", "；".join(problems))
    return changes


@router.post("/reports/{report_id}/manual", response_class=HTMLResponse)
def post_manual(request: Request, report_id: str, ws: WebSession = Depends(post_session),
                db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Record the manual items (all checked before any is saved)."""
    try:
        case = cases.load_case(db, report_id)
        if case.locked:
            raise ApiError(409, "locked", "案卷已锁定，不能修改 / the case is locked")
        changes = manual_changes(form, case.manual_items)
        for item_id, status, note in changes:
            cases.set_manual_item(db, report_id, item_id, status, note, ws.officer)
    except ApiError as exc:
        return _refused(request, db, ws, report_id, exc)
    return _done(report_id, "manual" if changes else "manual-none", "manual")


@router.post("/reports/{report_id}/result", response_class=HTMLResponse)
def post_result(request: Request, report_id: str, ws: WebSession = Depends(post_session),
                db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Choose the official result type."""
    code, note = _text(form, "result_type"), _text(form, "result_note")
    try:
        if not code:
            raise ApiError(422, "no_result_type", "请选择检查结果类型 / choose a result type")
        if len(note) > MAX_NOTE:
            raise ApiError(422, "note_too_long", f"说明超过 {MAX_NOTE} 字 / note longer than {MAX_NOTE} characters")
        cases.set_result(db, report_id, code, note, ws.officer)
    except ApiError as exc:
        return _refused(request, db, ws, report_id, exc)
    return _done(report_id, "result", "result")


@router.post("/reports/{report_id}/signoff", response_class=HTMLResponse)
def post_signoff(request: Request, report_id: str, ws: WebSession = Depends(post_session),
                 db: Session = Depends(get_db), form: FormData = Depends(form_data)) -> Response:
    """Sign as the officer whose own username and password are entered (two officers can share one tablet)."""
    username, password = _text(form, "username"), form.get("password")
    try:
        cases.report_row(db, report_id)  # 404 before any password is checked
        signer = auth.authenticate(db, username, password) if username and isinstance(password, str) else None
        if signer is None:
            record(db, officer_actor(ws.officer), "signoff.fail", report_id, {"username": username[:64]})
            db.commit()
            raise ApiError(400, "bad_signer", "签署人用户名或密码错误 / wrong username or password of the signing officer")
        locked = cases.sign_off(db, report_id, signer)
    except ApiError as exc:
        return _refused(request, db, ws, report_id, exc)
    return _done(report_id, "locked" if locked else "signed", "signoff")


@router.get("/reports/{report_id}/casefile.pdf")
def casefile_pdf(request: Request, report_id: str, ws: WebSession = Depends(page_session),
                 db: Session = Depends(get_db)) -> Response:
    """The case file 现场检查记录 as a PDF download (the export is audited)."""
    try:
        out = export_case(db, report_id, "pdf", officer_actor(ws.officer))
    except ApiError as exc:
        return _message(request, ws, exc)
    return Response(out.content, media_type=out.media_type,
                    headers={"Content-Disposition": f'attachment; filename="casefile-{out.filename}"',
                             "Cache-Control": "no-store"})
