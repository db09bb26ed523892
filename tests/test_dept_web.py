"""The department's pages (/ui/registry, /ui/plans, /ui/draws, /ui/results) and the public pages (/public)
against the real app on SQLite and on PostgreSQL, driven by form posts as a browser sends them."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from stdnum.cn import uscc

from agent_api import draw_algorithm as algo
from agent_api.audit import verify_chain
from agent_api.db import AuditEntry
from agent_api.dept_tables import Inspector, Plan, Result, Venue
from agent_api.draws import bundle_bytes, get_draw
from agent_api.registry_io import MAX_BYTES
from lab.registries import CONFLICT_HEADERS, INSPECTOR_HEADERS, VENUE_HEADERS, write_demo_registries
from probe.report import VenueRef
from tests.agentkit import officers_app
from tests.reportkit import make_report

OFFICERS = {"zhangwei": ("张伟", "350100123", "zhang-pass-1"), "chief": ("赵局长", "350199001", "chief-pass-99")}
PLAN = "FZ-MW-2026"
WITNESSES = [("见证甲", "31415926535"), ("见证乙", "8979323846")]
HOSTILE = "<script>alert(1)</script>"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_FIELD = re.compile(r'name="login_csrf" value="([^"]+)"')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def agent(request, tmp_path_factory):
    """The app with two officers, an enrolled probe and the demo registries imported through the upload form."""
    tmp = tmp_path_factory.mktemp("dept")
    db_url = request.getfixturevalue("pg_server").fresh_url() if request.param == "postgresql" else None
    app, priv = officers_app(tmp, db_url, OFFICERS)
    demo = write_demo_registries(tmp / "demo")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        csrf = login(client)
        for kind, path in (("venues", demo.venues), ("inspectors", demo.inspectors), ("conflicts", demo.conflicts)):
            page = upload(client, csrf, kind, path.name, path.read_bytes())
            assert page.status_code == 200 and "导入完成" in page.text, page.text
            if kind == "venues":  # the summary names the code whose check character does not match
                summary = page.text.split('id="summary"')[1].split("</section>")[0]
                assert f'href="/ui/registry/venues/{demo.mismatch_code}"' in summary
        banner = client.get("/ui/registry/venues").text.split('id="unconfirmed"')[1].split("</div>")[0]
        assert demo.mismatch_code in banner  # until a person confirms it
        confirmed = post(client, f"/ui/registry/venues/{demo.mismatch_code}/confirm", csrf, note="已核对营业执照原件")
        assert "信用代码已确认" in flash(confirmed, "ok")
        assert post(client, "/ui/plans", csrf, jurisdiction="FZ-MW", year="2026").url.path == f"/ui/plans/{PLAN}"
    yield SimpleNamespace(app=app, priv=priv, demo=demo)
    app.state.agent.engine.dispose()


@pytest.fixture
def client(agent):
    with TestClient(agent.app, base_url="http://127.0.0.1") as c:
        yield c


# --- helpers ------------------------------------------------------------------------------------------------------

def login(client: TestClient, username: str = "zhangwei") -> str:
    """Log in through the form; returns the session's CSRF token."""
    token = LOGIN_FIELD.search(client.get("/ui/login").text).group(1)
    page = client.post("/ui/login", data={"username": username, "password": OFFICERS[username][2],
                                          "login_csrf": token})
    assert page.status_code == 200, page.text
    return CSRF_FIELD.search(page.text).group(1)


def post(client: TestClient, path: str, csrf: str, **data: str):
    return client.post(path, data={"csrf_token": csrf, **data})


def upload(client: TestClient, csrf: str, kind: str, name: str, data: bytes):
    return client.post("/ui/registry/import", data={"csrf_token": csrf, "kind": kind},
                       files={"file": (name, data, "text/csv")})


def flash(page, kind: str = "error") -> str:
    found = re.search(rf'<div class="flash {kind}" role="\w+">(.*?)</div>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def prepare(client: TestClient, csrf: str, round_no: int, task: str, start: str = "2026-11-02",
            end: str = "2026-11-13", **extra: str):
    return post(client, "/ui/draws", csrf, plan=PLAN, round_no=str(round_no), task_number=task,
                task_name=f"第{round_no}轮检查", check_start=start, check_end=end, check_type="undirected", **extra)


def enter(client: TestClient, csrf: str, task: str, witnesses=WITNESSES, **extra: str):
    fields = {f"{key}_{n}": value for n, (name, digits) in enumerate(witnesses, 1)
              for key, value in (("witness_name", name), ("witness_digits", digits))}
    return post(client, f"/ui/draws/{task}/enter", csrf, **fields, **extra)


def drawn(agent, task: str) -> list[tuple[str, bool, list[str]]]:
    """(credit code, active, team) of each pick of ``task``, in the order made."""
    with agent.app.state.sessions() as db:
        picks = sorted(get_draw(db, task).venues, key=lambda p: p.id)
        return [(p.venue.credit_code, p.active, json.loads(p.inspectors)) for p in picks]


def count(agent, model: type) -> int:
    with agent.app.state.sessions() as db:
        return db.execute(select(func.count()).select_from(model)).scalar_one()


def actions(agent, subject: str) -> list[str]:
    with agent.app.state.sessions() as db:
        return list(db.scalars(select(AuditEntry.action).where(AuditEntry.subject == subject)
                               .order_by(AuditEntry.seq)))


def csv_bytes(headers: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([headers, *rows])
    return out.getvalue().encode("utf-8")


# --- access ---------------------------------------------------------------------------------------------------------

UI_PAGES = ["/ui/registry", "/ui/registry/venues", "/ui/registry/inspectors", "/ui/registry/conflicts",
            "/ui/registry/inspectors/new", "/ui/registry/export/venues.csv", "/ui/plans", f"/ui/plans/{PLAN}",
            "/ui/draws", "/ui/results"]


def test_pages_need_a_session_and_posts_a_token(agent, client):
    code = agent.demo.mismatch_code
    for path in [*UI_PAGES, f"/ui/registry/venues/{code}", "/ui/registry/inspectors/350100001", "/ui/draws/X-1",
                 "/ui/results/X-1"]:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    plans = count(agent, Plan)
    for path, data in (("/ui/plans", {"jurisdiction": "PY", "year": "2026"}), ("/ui/draws", {"plan": PLAN}),
                       (f"/ui/registry/venues/{code}/status", {"status": "closed", "reason": "x"})):
        r = client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    csrf = login(client)
    for path, data in (("/ui/plans", {"jurisdiction": "PY", "year": "2026"}),
                       (f"/ui/registry/venues/{code}/status", {"status": "closed", "reason": "x"}),
                       ("/ui/registry/conflicts/add", {"badge": "350100003", "credit_code": code, "reason": "x"})):
        for token in ("", csrf + "x"):
            assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    bad = client.post("/ui/registry/import", data={"csrf_token": "forged", "kind": "venues"},
                      files={"file": ("v.csv", agent.demo.venues.read_bytes(), "text/csv")})
    assert bad.status_code == 403
    assert count(agent, Plan) == plans and "venue.status" not in actions(agent, f"venue:{code}")


def test_every_page_renders_for_an_officer(agent, client):
    csrf = login(client)
    assert prepare(client, csrf, 3, "T-PAGES").url.path == "/ui/draws/T-PAGES"
    assert enter(client, csrf, "T-PAGES").status_code == 200
    code = agent.demo.mismatch_code
    for path in [*UI_PAGES, f"/ui/registry/venues/{code}", "/ui/registry/inspectors/350100001",
                 "/ui/draws/T-PAGES", "/ui/results/T-PAGES"]:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        if r.headers["content-type"].startswith("text/html"):
            assert '<html lang="zh-CN">' in r.text and "随机抽取" in r.text and 'aria-current="page"' in r.text
            assert "script-src" not in r.headers["content-security-policy"] and r.headers["cache-control"] == "no-store"
    assert client.get("/ui/registry/export/venues.csv").content.startswith("\ufeff统一社会信用代码".encode())
    assert "registry.export" in actions(agent, "registry:venues")
    for path in ("/ui/draws/NO-SUCH", "/ui/results/NO-SUCH", "/ui/plans/NO-SUCH", "/ui/registry/venues/X",
                 "/ui/registry/inspectors/NO-SUCH", "/ui/registry/nothing", "/ui/registry/export/x.pdf"):
        assert client.get(path).status_code in (404, 422), path


# --- registries -----------------------------------------------------------------------------------------------------

def test_demo_import_then_the_flagged_code_was_confirmed(agent, client):
    login(client)
    assert count(agent, Venue) >= agent.demo.venue_count and count(agent, Inspector) >= agent.demo.inspector_count
    page = client.get(f"/ui/registry/venues/{agent.demo.mismatch_code}")
    assert "已人工确认" in page.text and 'name="note"' not in page.text  # confirmed in the fixture, form gone
    assert actions(agent, f"venue:{agent.demo.mismatch_code}") == ["venue.confirm_code"]
    listing = client.get("/ui/registry/venues", params={"q": "（003店）"})
    assert agent.demo.mismatch_code in listing.text and "共 1 条" in listing.text
    two = client.get("/ui/registry/venues", params={"page": "2", "jurisdiction": "FZ-MW"})
    assert "第 2 页 / 共 2 页" in two.text and "上一页" in two.text


def test_bad_import_lists_every_row_and_stores_nothing(agent, client):
    csrf = login(client)
    venues, inspectors = count(agent, Venue), count(agent, Inspector)
    good = ["91350105MA00000011", "好网吧", "马尾区1号", "王五", "互联网上网服务", "FZ-MW", "营业", "否", "", ""]
    rows = [good,
            ["91350105MA0000001", "坏代码网吧", "马尾区2号", "王五", "互联网上网服务", "FZ-MW", "营业", "否", "", ""],
            ["91350105MA00000029", "", "马尾区3号", "王五", "互联网上网服务", "FZ-MW", "营业", "否", "", ""],
            ["91350105MA00000037", "状态网吧", "马尾区4号", "王五", "互联网上网服务", "FZ-MW", HOSTILE, "否", "", ""]]
    page = upload(client, csrf, "venues", "bad.csv", csv_bytes(VENUE_HEADERS[:-1], rows))
    assert page.status_code == 422 and "导入被拒绝" in flash(page)
    table = page.text[page.text.index('id="problems"'):]
    for row, column in ((3, "统一社会信用代码"), (4, "名称"), (5, "状态")):
        assert re.search(rf"<td>{row}</td><td>{column}</td>", table), (row, column)
    assert HOSTILE not in page.text and html.escape(HOSTILE, quote=False) in page.text
    dup = [["350100001", "甲", "男", "网安大队", "民警", "FZ-MW", "是", "民警", "是"],
           ["350100001", "乙", "女", "网安大队", "民警", "FZ-MW", "是", "民警", "是"]]
    page = upload(client, csrf, "inspectors", "dup.csv", csv_bytes(INSPECTOR_HEADERS, dup))
    assert page.status_code == 422 and re.search(r"<td>3</td><td>警号</td><td>与第 2 行重复", page.text)
    garbage = upload(client, csrf, "conflicts", "x.csv", bytes(range(256)) * 8)
    assert garbage.status_code == 422 and "不是 CSV 或 XLSX" in garbage.text
    huge = upload(client, csrf, "venues", "huge.csv", b"x" * (MAX_BYTES + 70 * 1024))
    assert huge.status_code == 413 and "文件过大" in flash(huge)
    assert (count(agent, Venue), count(agent, Inspector)) == (venues, inspectors)
    assert "王五" not in client.get("/ui/registry/venues", params={"q": "好网吧"}).text


def test_venue_and_inspector_pages_change_the_registry(agent, client):
    csrf = login(client)
    code = agent.demo.mismatch_code  # venue 3 of the demo: open and blacklisted
    base = f"/ui/registry/venues/{code}"
    refused = post(client, f"{base}/blacklist", csrf, blacklisted="0", reason="")
    assert refused.status_code == 422 and "条目未保存" in flash(refused) and "原因 / reason" in refused.text
    off = post(client, f"{base}/blacklist", csrf, blacklisted="0", reason="整改到位")
    assert "黑名单状态已保存" in flash(off, "ok") and "移出黑名单 / off the blacklist" in off.text
    assert "整改到位" in off.text  # the credit history
    on = post(client, f"{base}/blacklist", csrf, blacklisted="1", reason="多次违规", on="2026-11-02")
    assert "多次违规（2026-11-02）" in on.text and "列入黑名单 / blacklisted" in on.text
    closed = post(client, f"{base}/status", csrf, status="closed", reason="装修")
    assert '<span class="status st-closed">停业 / closed</span>' in closed.text
    post(client, f"{base}/status", csrf, status="open", reason="重新开业")
    with agent.app.state.sessions() as db:
        venue = db.scalar(select(Venue).where(Venue.credit_code == code))
        fields = {k: getattr(venue, k) for k in ("name", "address", "legal_rep", "industry", "jurisdiction")}
    edited = post(client, f"{base}/edit", csrf, **{**fields, "industry": "互联网上网服务（改）", "site_id": "SITE-EDIT-1"})
    assert "场所信息已保存" in flash(edited, "ok") and "SITE-EDIT-1" in edited.text
    assert actions(agent, f"venue:{code}")[-5:] == ["venue.unblacklist", "venue.blacklist", "venue.status",
                                                     "venue.status", "venue.update"]

    person = {"badge": "FZ-TEST-1", "name": "测试民警", "sex": "female", "unit": "网安大队", "post": "民警",
              "jurisdiction": "PY", "qualified": "yes", "kind": "officer", "active": "yes"}
    added = post(client, "/ui/registry/inspectors/new", csrf, **person)
    assert added.url.path == "/ui/registry/inspectors/FZ-TEST-1" and "检查人员已保存" in flash(added, "ok")
    again = post(client, "/ui/registry/inspectors/new", csrf, **person)
    assert again.status_code == 409 and 'value="测试民警"' in again.text
    changed = post(client, "/ui/registry/inspectors/FZ-TEST-1", csrf, **{**person, "qualified": "no", "badge": "X"})
    assert changed.url.path == "/ui/registry/inspectors/FZ-TEST-1"
    with agent.app.state.sessions() as db:
        assert db.scalar(select(Inspector.qualified).where(Inspector.badge == "FZ-TEST-1")) is False
    back = "/ui/registry/inspectors/FZ-TEST-1"
    declared = post(client, "/ui/registry/conflicts/add", csrf, badge="FZ-TEST-1", credit_code=code,
                    reason="同学经营", declared_on="2026-10-01", back=back)
    assert declared.url.path == back and "同学经营" in declared.text
    twice = post(client, "/ui/registry/conflicts/add", csrf, badge="FZ-TEST-1", credit_code=code, reason="x")
    assert twice.status_code == 409 and "已申报" in flash(twice)
    removed = post(client, "/ui/registry/conflicts/remove", csrf, badge="FZ-TEST-1", credit_code=code,
                   reason="已离职", back="//evil.example/")
    assert removed.url.path == "/ui/registry/conflicts" and "回避申报已撤销" in flash(removed, "ok")
    assert actions(agent, f"conflict:FZ-TEST-1/{code}") == ["conflict.add", "conflict.remove"]


# --- plans ----------------------------------------------------------------------------------------------------------

def test_plan_forms(agent, client):
    csrf = login(client)
    low = post(client, "/ui/plans", csrf, jurisdiction="PY", year="2026", ratio="0.04", name="濮阳县计划")
    assert low.status_code == 422 and "低于下限" in flash(low) and 'value="濮阳县计划"' in low.text
    made = post(client, "/ui/plans", csrf, jurisdiction="PY", year="2026", rounds="2")
    assert made.url.path == "/ui/plans/PY-2026" and made.text.count('class="round-') == 24  # 2 a month
    assert "st-missing" in made.text  # the rounds of January to October have no draw, as of today
    assert "福州市马尾区" in client.get("/ui/plans").text  # the defaults table
    waived = post(client, "/ui/plans/PY-2026/reduce", csrf, round_no="3", kind="joint", reason="参加市局联合检查")
    assert "已核减该轮次" in flash(waived, "ok") and "参与联合抽查 / joint check：参加市局联合检查" in waived.text
    again = post(client, "/ui/plans/PY-2026/reduce", csrf, round_no="3", kind="joint", reason="x")
    assert again.status_code == 409 and "已核减" in flash(again)


# --- the ceremony ---------------------------------------------------------------------------------------------------

def test_draw_ceremony_through_the_forms(agent, client):
    csrf = login(client)
    beacon = "2026-11-30 上证指数收盘点位"
    page = prepare(client, csrf, 1, "T-CEREMONY", beacon_name=beacon)
    assert page.url.path == "/ui/draws/T-CEREMONY" and "快照与承诺值已固定并公布" in flash(page, "ok")
    with agent.app.state.sessions() as db:
        draw = get_draw(db, "T-CEREMONY")
        secret, commitment, sha = draw.secret, draw.commitment, draw.snapshot_sha256
    grouped = "".join(f"<span>{commitment[i:i + 8]}</span>" for i in range(0, 64, 8))
    assert grouped in page.text and sha[:8] in page.text and beacon in page.text and "cafe-draw/1" in page.text
    public = client.get("/public/draws/T-CEREMONY")
    assert public.status_code == 200 and grouped in public.text and secret not in public.text
    assert secret not in page.text and secret[:8] not in page.text
    assert client.get("/public/draws/T-CEREMONY/bundle.json").status_code == 404

    short = enter(client, csrf, "T-CEREMONY", [("见证甲", "123")], beacon_value="3421.07")
    assert short.status_code == 422 and "见证输入不符合要求" in flash(short) and 'value="见证甲"' in short.text
    no_beacon = enter(client, csrf, "T-CEREMONY")
    assert no_beacon.status_code == 422 and drawn(agent, "T-CEREMONY") == []
    done = enter(client, csrf, "T-CEREMONY", beacon_value="3421.07")
    assert done.status_code == 200 and "抽取完成" in flash(done, "ok")
    picks = drawn(agent, "T-CEREMONY")
    assert picks and all(active and len(team) == 2 for _, active, team in picks)
    for code, _, team in picks:
        assert code in done.text and all(badge in done.text for badge in team)
    with agent.app.state.sessions() as db:  # inspectors by name on the officers' page
        name = db.scalar(select(Inspector.name).where(Inspector.badge == picks[0][2][0]))
    assert name in done.text and "3421.07" in done.text
    assert enter(client, csrf, "T-CEREMONY", beacon_value="1").status_code == 409  # drawn once only
    hidden = client.get("/public/draws/T-CEREMONY").text  # inputs public, picks not until publication
    assert "3421.07" in hidden and not any(code in hidden for code, _, _ in picks)

    published = post(client, "/ui/draws/T-CEREMONY/publish", csrf)
    assert "已公布" in flash(published, "ok") and "".join(f"<span>{secret[i:i + 8]}</span>"
                                                       for i in range(0, 64, 8)) in published.text
    first = picks[0][0]
    wrong = post(client, "/ui/draws/T-CEREMONY/replace", csrf, target=f"venue|{first}", reason="场所停业装修",
                 approver_username="chief", approver_password="not-the-password")
    assert wrong.status_code == 400 and "批准人用户名或密码错误" in flash(wrong)
    assert "draw.replace.fail" in actions(agent, "T-CEREMONY") and drawn(agent, "T-CEREMONY") == picks
    replaced = post(client, "/ui/draws/T-CEREMONY/replace", csrf, target=f"venue|{first}", reason="场所停业装修",
                    approver_username="chief", approver_password=OFFICERS["chief"][2])
    assert "已按批准替换" in flash(replaced, "ok") and "已替换 / withdrawn" in replaced.text
    after = drawn(agent, "T-CEREMONY")
    assert after[0] == (first, False, picks[0][2]) and len(after) == len(picks) + 1 and after[-1][1]
    member = after[1][2][0]
    swapped = post(client, "/ui/draws/T-CEREMONY/replace", csrf, target=f"inspector|{after[1][0]}|{member}",
                   reason="该民警出差", approver_username="chief", approver_password=OFFICERS["chief"][2])
    assert swapped.status_code == 200 and member not in drawn(agent, "T-CEREMONY")[1][2]
    assert "赵局长" in swapped.text  # the approver's name on the officers' page

    public = client.get("/public/draws/T-CEREMONY")
    assert after[-1][0] in public.text and "场所停业装修" in public.text and OFFICERS["chief"][1] in public.text
    assert "赵局长" not in public.text and "chief" not in public.text and name not in public.text
    bundle = client.get("/public/draws/T-CEREMONY/bundle.json")
    with agent.app.state.sessions() as db:
        assert bundle.content == bundle_bytes(get_draw(db, "T-CEREMONY"))
        assert verify_chain(db).ok
    assert "attachment" in bundle.headers["content-disposition"]
    checked = algo.verify_bundle(json.loads(bundle.content))
    assert checked.ok, checked.problems
    assert [p["credit_code"] for p in checked.final] == [c for c, active, _ in drawn(agent, "T-CEREMONY") if active]
    verifier = client.get("/public/verify_draw.py")
    assert verifier.content == Path(algo.__file__).read_bytes()
    assert verifier.headers["content-type"].startswith("text/x-python") and "attachment" in \
        verifier.headers["content-disposition"]
    assert actions(agent, "T-CEREMONY")[:3] == ["draw.prepare", "draw.enter", "draw.publish"]


# --- results --------------------------------------------------------------------------------------------------------

def test_results_record_publish_and_change(agent, client):
    csrf = login(client)
    prepare(client, csrf, 2, "T-RESULTS", start="2026-11-02", end="2026-11-13")
    enter(client, csrf, "T-RESULTS")
    # A check in a year without a confirmed holiday schedule: its deadline is an estimate, said so on the page.
    prepare(client, csrf, 6, "T-LATE", start="2099-11-02", end="2099-11-13")
    enter(client, csrf, "T-LATE")
    picks = [code for code, _, _ in drawn(agent, "T-RESULTS")]
    with agent.app.state.sessions() as db:
        # The result that blacklists must be of a venue not blacklisted already (the change lifts only its own).
        clean = set(db.scalars(select(Venue.credit_code).where(Venue.blacklisted.is_(False))))
        picks.sort(key=lambda code: code not in clean)
        venue = db.scalar(select(Venue).where(Venue.credit_code == picks[0]))
        assert not venue.blacklisted
        fields = {k: getattr(venue, k) for k in ("name", "address", "legal_rep", "industry", "jurisdiction")}
        ids = {p.venue.credit_code: p.id for p in get_draw(db, "T-RESULTS").venues}
    post(client, f"/ui/registry/venues/{picks[0]}/edit", csrf, **fields, site_id="SITE-RESULTS-1")
    envelope, verified = make_report(agent.priv, venue=VenueRef(id="SITE-RESULTS-1", name=fields["name"]))
    assert client.post("/v1/reports", content=envelope, headers={"Content-Type": "application/json"}).status_code == 201
    report_id = verified.payload.report_id

    listing = client.get("/ui/results")
    rows = re.findall(r"<tr[ >].*?</tr>", listing.text, flags=re.S)
    late = [row for row in rows if "/ui/results/T-LATE" in row]
    current = [row for row in rows if "/ui/results/T-RESULTS" in row]
    assert late and all("估算 / estimate (no confirmed holiday schedule)" in row for row in late)
    assert current and not any("估算" in row for row in current)
    page = client.get("/ui/results/T-RESULTS")
    assert f'<option value="{report_id}" selected>' in page.text and page.text.count("未发现问题 / No problem") >= len(picks)
    missing = post(client, "/ui/results/T-RESULTS/record", csrf, draw_venue_id=str(ids[picks[0]]), result_type="",
                   completed_on="2026-11-10")
    assert missing.status_code == 422 and "请选择检查结果类型" in flash(missing)
    early = post(client, "/ui/results/T-RESULTS/record", csrf, draw_venue_id=str(ids[picks[0]]),
                 result_type="pending_followup", completed_on="2026-11-01", remark="待复查")
    assert early.status_code == 422 and 'value="待复查"' in early.text
    foreign = post(client, "/ui/results/T-RESULTS/record", csrf, draw_venue_id="999999", result_type="no_problem",
                   completed_on="2026-11-10")
    assert foreign.status_code == 404
    saved = post(client, "/ui/results/T-RESULTS/record", csrf, draw_venue_id=str(ids[picks[0]]),
                 result_type="发现问题待后续处理", completed_on="2026-11-10", remark="待复查", report_id=report_id)
    assert "结果已保存" in flash(saved, "ok"), flash(saved)
    for code in picks[1:]:
        post(client, "/ui/results/T-RESULTS/record", csrf, draw_venue_id=str(ids[code]), result_type="no_problem",
             completed_on="2026-11-11")
    published = post(client, "/ui/results/T-RESULTS/publish", csrf)
    assert "结果已公示" in flash(published, "ok") and published.text.count('name="to_type"') == 1
    with agent.app.state.sessions() as db:
        result = db.scalar(select(Result).where(Result.draw_venue_id == ids[picks[0]]))
        assert result.report_id == report_id and result.deadline == date(2026, 12, 8)  # 20 working days, none a holiday
        assert db.scalar(select(Venue.blacklisted).where(Venue.credit_code == picks[0]))
    public = client.get("/public/results")
    assert "发现问题待后续处理" in public.text and picks[0] in public.text
    no_reason = post(client, "/ui/results/T-RESULTS/change", csrf, result_id=str(result.id), to_type="no_problem",
                     reason="")
    assert no_reason.status_code == 422 and "修改原因" in flash(no_reason)
    changed = post(client, "/ui/results/T-RESULTS/change", csrf, result_id=str(result.id), to_type="no_problem",
                   reason="复查未发现问题")
    assert "结果已修改" in flash(changed, "ok") and "复查未发现问题" in changed.text
    assert "复查未发现问题" in client.get("/public/results").text
    history = client.get(f"/ui/registry/venues/{picks[0]}").text
    assert "移出黑名单" in history and "结果修改" in history
    rows = list(csv.reader(io.StringIO(client.get("/public/results.csv").content.decode("utf-8-sig"))))
    assert rows[0][0] == "抽查计划编号" and any(r[7] == picks[0] and r[9] == "未发现问题" for r in rows[1:])
    assert any(r["credit_code"] == picks[0] and r["check_type"] == "undirected" and r["result_type"] == "no_problem"
               for r in json.loads(client.get("/public/results.json").content))
    assert client.get("/public/results.xlsx").content.startswith(b"PK")


# --- public pages ---------------------------------------------------------------------------------------------------

def test_public_pages_need_no_login_and_leak_nothing_personal(agent, client):
    csrf = login(client)
    prepare(client, csrf, 4, "T-ANNOUNCED")
    prepare(client, csrf, 5, "T-PUBLIC")
    enter(client, csrf, "T-PUBLIC")
    post(client, "/ui/draws/T-PUBLIC/publish", csrf)
    code = drawn(agent, "T-PUBLIC")[0][0]
    post(client, "/ui/draws/T-PUBLIC/replace", csrf, target=f"venue|{code}", reason="批准替换",
         approver_username="chief", approver_password=OFFICERS["chief"][2])
    with agent.app.state.sessions() as db:
        draw = get_draw(db, "T-PUBLIC")
        pick = next(p for p in draw.venues if p.active)
        announced = get_draw(db, "T-ANNOUNCED")
        people = list(db.scalars(select(Inspector)))
        venues = list(db.scalars(select(Venue).where(Venue.jurisdiction == "FZ-MW")))
        hidden = (announced.secret, draw.snapshot_sha256)
    post(client, "/ui/results/T-PUBLIC/record", csrf, draw_venue_id=str(pick.id), result_type="corrected",
         completed_on="2026-11-12", remark="当场改正")
    post(client, "/ui/results/T-PUBLIC/publish", csrf)

    anonymous = TestClient(agent.app, base_url="http://127.0.0.1")
    pages = {path: anonymous.get(path) for path in ("/public", "/public/draws/T-PUBLIC", "/public/draws/T-ANNOUNCED",
                                                     "/public/results", "/public/results.csv", "/public/results.json",
                                                     "/public/draws/T-PUBLIC/bundle.json")}
    for path, r in pages.items():
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in \
            r.headers["content-security-policy"]
        text = r.content.decode("utf-8-sig")
        for person in people:
            assert person.name not in text, (path, person.name)
        for venue in venues:
            assert venue.legal_rep not in text and venue.address not in text, path
        for word in ("副大队长", "男", "女", "female", "赵局长", "zhangwei", "张伟", "chief", "officer:"):
            assert word not in text, (path, word)
    assert "T-ANNOUNCED" in pages["/public"].text and "T-PUBLIC" in pages["/public"].text
    assert "当场改正" in pages["/public/results"].text and pick.venue.name in pages["/public/results"].text
    announced_page = pages["/public/draws/T-ANNOUNCED"].text
    assert hidden[0] not in announced_page and "抽取结果" not in announced_page and "T-ANNOUNCED" in announced_page
    assert anonymous.get("/public/draws/T-ANNOUNCED/bundle.json").status_code == 404
    assert pages["/public/draws/T-PUBLIC"].text.count(OFFICERS["chief"][1]) == 1  # the approver, by badge
    assert "python3 verify_draw.py bundle-T-PUBLIC.json" in pages["/public/draws/T-PUBLIC"].text
    for method in (anonymous.post, anonymous.put, anonymous.delete):
        assert method("/public/draws/T-PUBLIC").status_code == 405
    assert anonymous.get("/ui/draws", follow_redirects=False).status_code == 303


def test_hostile_registry_text_is_escaped(agent, client):
    csrf = login(client)
    code = "91350105MA0099999" + uscc.calc_check_digit("91350105MA0099999")
    venue = [code, HOSTILE, f"地址{HOSTILE}", "王五", "互联网上网服务", "XSS", "营业", "是", f"原因{HOSTILE}", "2026-01-02"]
    assert upload(client, csrf, "venues", "xss.csv", csv_bytes(VENUE_HEADERS[:-1], [venue])).status_code == 200
    staff = [[f"XSS-{n}", f"民警{n}", "男", f"单位{HOSTILE}", "民警", "XSS", "是", "民警", "是"] for n in range(4)]
    assert upload(client, csrf, "inspectors", "xss.csv", csv_bytes(INSPECTOR_HEADERS, staff)).status_code == 200
    conflict = [["XSS-0", code, f"事由{HOSTILE}", "2026-01-03"]]
    assert upload(client, csrf, "conflicts", "xss.csv", csv_bytes(CONFLICT_HEADERS, conflict)).status_code == 200
    made = post(client, "/ui/plans", csrf, jurisdiction="PY", jurisdiction_other="XSS", year="2026",
                authority="测试分局")  # a code the rules do not list: typed in, the `default` values
    assert made.url.path == "/ui/plans/XSS-2026", flash(made)
    post(client, "/ui/draws", csrf, plan="XSS-2026", round_no="1", task_number="T-XSS", task_name=f"任务{HOSTILE}",
         check_start="2026-11-25", check_end="2026-11-30", check_type="directed")
    enter(client, csrf, "T-XSS")
    post(client, "/ui/draws/T-XSS/publish", csrf)
    pages = [client.get(path) for path in (f"/ui/registry/venues?q={code}", f"/ui/registry/venues/{code}",
                                           "/ui/registry/inspectors/XSS-1", "/ui/registry/conflicts?q=XSS-0",
                                           "/ui/draws/T-XSS", "/ui/results/T-XSS", "/public", "/public/draws/T-XSS")]
    for page in pages:
        assert page.status_code == 200
        assert HOSTILE not in page.text and "<script" not in page.text, page.url
        assert html.escape(HOSTILE, quote=False) in page.text or "&lt;script&gt;" in page.text, page.url
