"""The officers' web UI (/ui) against the real app: real SQLite in a temp dir, real argon2, real signed reports."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent_api import auth
from agent_api.audit import verify_chain
from agent_api.cases import manual_checks
from agent_api.db import AuditEntry, Report
from probe.findings import Citation, Finding, Status
from tests.agentkit import officers_app
from tests.reportkit import VENUE_NAME, make_report

OFFICERS = {"zhangwei": ("张伟", "350100123", "zhang-pass-1"), "lina": ("李娜", "350100456", "lina-pass-22")}
HOSTILE = "<script>alert(1)</script>"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_FIELD = re.compile(r'name="login_csrf" value="([^"]+)"')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def agent(request, tmp_path_factory):
    """The app with two officers and an enrolled probe, on SQLite then on PostgreSQL; yields (app, probe key)."""
    tmp = tmp_path_factory.mktemp("agent")
    db_url = request.getfixturevalue("pg_server").fresh_url() if request.param == "postgresql" else None
    app, priv = officers_app(tmp, db_url, OFFICERS)
    yield app, priv
    app.state.agent.engine.dispose()


@pytest.fixture
def client(agent):
    app, _ = agent
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def submit(agent, **overrides) -> str:
    """A fresh signed report posted to the real endpoint; returns its report id."""
    app, priv = agent
    envelope, verified = make_report(priv, **overrides)
    with TestClient(app) as c:
        response = c.post("/v1/reports", content=envelope, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    return verified.payload.report_id


def login(client: TestClient, username: str = "zhangwei", password: str | None = None) -> str:
    """Log in through the form; returns the session's CSRF token as the pages carry it."""
    form = client.get("/ui/login")
    token = LOGIN_FIELD.search(form.text).group(1)
    page = client.post("/ui/login", data={"username": username, "password": password or OFFICERS[username][2],
                                          "login_csrf": token})
    assert page.status_code == 200 and page.url.path == "/ui/reports", page.text
    return CSRF_FIELD.search(page.text).group(1)


def audit_actions(agent, subject: str) -> list[tuple[str, str]]:
    app, _ = agent
    with app.state.sessions() as db:
        rows = db.execute(select(AuditEntry).where(AuditEntry.subject == subject).order_by(AuditEntry.seq)).scalars()
        return [(e.actor, e.action) for e in rows]


def manual_form(csrf: str, status: str = "pass") -> dict[str, str]:
    data = {"csrf_token": csrf}
    for rule in manual_checks():
        data[f"status__{rule.id}"] = status
        data[f"note__{rule.id}"] = f"{rule.id} 现场核对"
    return data


def sign(client, report_id, csrf, username):
    return client.post(f"/ui/reports/{report_id}/signoff",
                       data={"csrf_token": csrf, "username": username, "password": OFFICERS[username][2]})


def test_pages_redirect_to_login_without_a_session(agent, client):
    report_id = submit(agent)
    for path in ("/ui/reports", f"/ui/reports/{report_id}", f"/ui/reports/{report_id}/casefile.pdf", "/"):
        r = client.get(path, follow_redirects=True)
        assert r.url.path == "/ui/login" and "检查人员登录" in r.text, path
    r = client.get("/ui/reports", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    posted = client.post(f"/ui/reports/{report_id}/manual", data=manual_form("x"), follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"] == "/ui/login"
    assert ("officer:zhangwei", "manual.set") not in audit_actions(agent, report_id)


def test_login_wrong_password_then_right_then_logout(agent, client):
    token = LOGIN_FIELD.search(client.get("/ui/login").text).group(1)
    wrong = client.post("/ui/login", data={"username": "zhangwei", "password": "nope-nope", "login_csrf": token})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text and 'value="zhangwei"' in wrong.text
    assert auth.COOKIE_NAME not in client.cookies
    assert ("anonymous", "login.fail") in audit_actions(agent, "zhangwei")
    # The login form has no session yet: its token is a double-submit cookie.
    forged = client.post("/ui/login", data={"username": "zhangwei", "password": OFFICERS["zhangwei"][2],
                                            "login_csrf": "forged"})
    assert forged.status_code == 403 and "登录表单已失效" in forged.text and auth.COOKIE_NAME not in client.cookies

    csrf = login(client)
    set_cookie = [h for h in client.get("/ui/login", follow_redirects=False).headers.get_list("set-cookie")]
    assert not set_cookie  # already logged in: redirected, no new login token
    assert ("officer:zhangwei", "login") in audit_actions(agent, "zhangwei")
    assert client.post("/ui/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/ui/logout", data={"csrf_token": csrf})
    assert out.url.path == "/ui/login"
    assert client.get("/ui/reports", follow_redirects=False).status_code == 303
    assert ("officer:zhangwei", "logout") in audit_actions(agent, "zhangwei")


def test_session_cookie_flags(agent, client):
    token = LOGIN_FIELD.search(client.get("/ui/login").text).group(1)
    r = client.post("/ui/login", data={"username": "lina", "password": OFFICERS["lina"][2], "login_csrf": token},
                    follow_redirects=False)
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(auth.COOKIE_NAME + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


def test_post_without_or_with_wrong_csrf_is_refused(agent, client):
    report_id = submit(agent)
    csrf = login(client)
    for data in (manual_form("wrong-token"), {k: v for k, v in manual_form(csrf).items() if k != "csrf_token"}):
        assert client.post(f"/ui/reports/{report_id}/manual", data=data).status_code == 403
    assert client.post(f"/ui/reports/{report_id}/result",
                       data={"csrf_token": csrf + "x", "result_type": "no_problem"}).status_code == 403
    assert client.post(f"/ui/reports/{report_id}/signoff",
                       data={"username": "zhangwei", "password": OFFICERS["zhangwei"][2]}).status_code == 403
    app, _ = agent
    with app.state.sessions() as db:
        row = db.execute(select(Report).where(Report.report_id == report_id)).scalar_one()
        assert row.manual_items == [] and row.result_type is None and row.signoffs == []


def test_report_list_and_detail_show_the_report(agent, client):
    report_id = submit(agent)
    login(client)
    listing = client.get("/ui/reports")
    assert VENUE_NAME in listing.text and f"/ui/reports/{report_id}" in listing.text
    assert "status-fail" in listing.text  # the kit's café has an IP-MAP failure
    page = client.get(f"/ui/reports/{report_id}")
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    for text in (VENUE_NAME, report_id, "FZ-2026-11-007", "350100456", "probe-test", "马尾-1号",
                 "2026-11-24 10:00:00 +08:00", "终端IP与机器编号一致", "198.18.10.140", "互联网上网服务营业场所管理条例",
                 f"/v1/reports/{report_id}/export.json", f"/v1/reports/{report_id}/export.ocsf.json",
                 f"/ui/reports/{report_id}/casefile.pdf"):
        assert text in page.text, text
    app, _ = agent
    with app.state.sessions() as db:
        row = db.execute(select(Report).where(Report.report_id == report_id)).scalar_one()
        assert row.sha256 in page.text and row.probe_key_id in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script at all
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/ui/reports/00000000-0000-4000-8000-000000000000").status_code == 404


def test_manual_items_and_result_type_are_saved_and_audited(agent, client):
    report_id = submit(agent)
    csrf = login(client)
    partial = {"csrf_token": csrf, "status__SIGNAGE": "fail", "note__SIGNAGE": "招牌为“星际电竞”"}
    r = client.post(f"/ui/reports/{report_id}/manual", data=partial)
    assert r.status_code == 200 and "人工检查项已保存" in r.text and "招牌为“星际电竞”" in r.text
    bad = client.post(f"/ui/reports/{report_id}/manual", data={"csrf_token": csrf, "status__ADDRESS": "maybe"})
    assert bad.status_code == 422 and "结果无效" in bad.text
    no_status = client.post(f"/ui/reports/{report_id}/manual", data={"csrf_token": csrf, "note__ADDRESS": "只有说明"})
    assert no_status.status_code == 422 and "请选择结果" in no_status.text
    r = client.post(f"/ui/reports/{report_id}/manual", data=manual_form(csrf))
    assert r.status_code == 200
    checked = re.findall(r'name="status__([A-Z-]+)" value="pass" checked', r.text)
    assert sorted(checked) == sorted(rule.id for rule in manual_checks())

    assert client.post(f"/ui/reports/{report_id}/result", data={"csrf_token": csrf, "result_type": ""}).status_code == 422
    assert client.post(f"/ui/reports/{report_id}/result",
                       data={"csrf_token": csrf, "result_type": "no_such"}).status_code == 422
    r = client.post(f"/ui/reports/{report_id}/result",
                    data={"csrf_token": csrf, "result_type": "corrected", "result_note": "当场改正IP"})
    assert r.status_code == 200 and "检查结果类型已保存" in r.text
    assert '<option value="corrected" selected>' in r.text and "当场改正IP" in r.text

    actions = audit_actions(agent, report_id)
    manual_sets = [a for a in actions if a == ("officer:zhangwei", "manual.set")]
    assert len(manual_sets) == 1 + len(manual_checks())  # SIGNAGE twice (fail, then pass), the others once
    assert ("officer:zhangwei", "result.set") in actions
    # The page lists the report's audit entries with who did what.
    assert r.text.count("manual.set") == len(manual_sets) and "officer:zhangwei" in r.text


def test_signoff_by_two_different_officers_locks_the_case(agent, client):
    report_id = submit(agent)
    csrf = login(client)
    early = sign(client, report_id, csrf, "zhangwei")
    assert early.status_code == 409 and "人工检查项未填写" in early.text and "未选择检查结果" in early.text
    client.post(f"/ui/reports/{report_id}/manual", data=manual_form(csrf))
    client.post(f"/ui/reports/{report_id}/result", data={"csrf_token": csrf, "result_type": "corrected"})

    wrong = client.post(f"/ui/reports/{report_id}/signoff",
                        data={"csrf_token": csrf, "username": "lina", "password": "not-her-password"})
    assert wrong.status_code == 400 and "签署人用户名或密码错误" in wrong.text

    first = sign(client, report_id, csrf, "zhangwei")
    assert first.status_code == 200 and "还需另一名检查人员签署" in first.text
    again = sign(client, report_id, csrf, "zhangwei")
    assert again.status_code == 409 and "您已签字" in again.text

    # Officer B signs on the same tablet, inside A's session.
    second = sign(client, report_id, csrf, "lina")
    assert second.status_code == 200 and "案卷已锁定" in second.text
    assert "张伟" in second.text and "李娜" in second.text and "350100456" in second.text
    assert second.text.count("<fieldset class=\"plain\" disabled>") == 2
    assert 'name="password"' not in second.text  # no sign-off form any more

    app, _ = agent
    with app.state.sessions() as db:
        row = db.execute(select(Report).where(Report.report_id == report_id)).scalar_one()
        assert row.locked_at is not None and len(row.signoffs) == 2
        assert verify_chain(db).ok
    late = client.post(f"/ui/reports/{report_id}/manual", data=manual_form(csrf, "fail"))
    assert late.status_code == 409 and "锁定" in late.text
    late = client.post(f"/ui/reports/{report_id}/result", data={"csrf_token": csrf, "result_type": "no_problem"})
    assert late.status_code == 409
    assert sign(client, report_id, csrf, "lina").status_code == 409
    with app.state.sessions() as db:
        row = db.execute(select(Report).where(Report.report_id == report_id)).scalar_one()
        assert row.result_type == "corrected" and {m.status for m in row.manual_items} == {"pass"}

    actions = audit_actions(agent, report_id)
    assert actions.count(("officer:zhangwei", "signoff")) == 1 and ("officer:lina", "signoff") in actions
    assert ("officer:zhangwei", "signoff.fail") in actions


def test_change_after_first_signoff_withdraws_it(agent, client):
    report_id = submit(agent)
    csrf = login(client, "lina")
    client.post(f"/ui/reports/{report_id}/manual", data=manual_form(csrf))
    client.post(f"/ui/reports/{report_id}/result", data={"csrf_token": csrf, "result_type": "corrected"})
    assert sign(client, report_id, csrf, "lina").status_code == 200
    r = client.post(f"/ui/reports/{report_id}/result", data={"csrf_token": csrf, "result_type": "pending_followup"})
    assert r.status_code == 200 and "signoff.withdraw" in r.text
    # lina's earlier signature covered another result: she may sign again.
    assert sign(client, report_id, csrf, "lina").status_code == 200


def test_evidence_from_the_network_is_escaped(agent, client):
    hostile = Finding(check_id="IP-MAP", status=Status.FAIL, title_zh="终端IP与机器编号一致", title_en="IP map",
                      summary_zh=f"摘要 {HOSTILE}", summary_en="summary",
                      evidence={"mismatches": [{"number": 1, "address": "198.18.10.9", "name": HOSTILE}],
                                "note": HOSTILE, "<b>key</b>": ["a", '"><img src=x onerror=alert(2)>']},
                      legal_basis=[Citation(law="《条例》", article="第八条", verified="V")], result_type=None)
    report_id = submit(agent, findings=[hostile], counts={s: int(s is Status.FAIL) for s in Status})
    login(client)
    page = client.get(f"/ui/reports/{report_id}")
    assert page.status_code == 200
    assert HOSTILE not in page.text and "<img src=x" not in page.text and "<b>key</b>" not in page.text
    assert html.escape(HOSTILE, quote=False) in page.text
    assert page.text.count(html.escape(HOSTILE, quote=False)) >= 3  # summary, table cell, scalar
    assert "&lt;b&gt;key&lt;/b&gt;" in page.text


def test_casefile_pdf_download_from_the_ui(agent, client):
    report_id = submit(agent)
    login(client)
    r = client.get(f"/ui/reports/{report_id}/casefile.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and "attachment" in r.headers["content-disposition"]
    assert ("officer:zhangwei", "export") in audit_actions(agent, report_id)


def test_static_css_is_served_locally(client):
    css = client.get("/static/agent.css")
    assert css.status_code == 200 and ".status-fail" in css.text and "http" not in css.text
    assert "@import" not in css.text and "url(" not in css.text


def test_templates_fetch_nothing_from_outside():
    templates = Path(__file__).resolve().parent.parent / "agent_api" / "templates"
    for path in templates.glob("*.html"):
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "<script" not in text, path.name
