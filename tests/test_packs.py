"""Task packs, department side (agent_api.packs, ``cafe-agent pack``, ``enroll-probe --code``) on SQLite and
PostgreSQL: a real drawn round from the demo registries, venue profiles in the store, a probe enrolled with a key
made by probe.home, and the pack opened with probe.taskpack.open_pack by that probe's key."""

from __future__ import annotations

import base64
import json
import stat
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from typer.testing import CliRunner

from agent_api import ApiError
from agent_api import registry
from agent_api.app import Agent, open_agent
from agent_api.audit import CLI
from agent_api.auth import enroll_probe, revoke_probe
from agent_api.cli import app as cli
from agent_api.db import AuditEntry
from agent_api.dept_tables import Draw, DrawVenue
from agent_api.draws import enter_draw, get_draw, prepare_draw, publish_draw, team
from agent_api.packs import department_key, export_pack
from agent_api.plans import create_plan
from agent_api.settings import Settings
from agent_api.venue_profiles import ProfileRefused, add_profile
from lab.registries import write_demo_registries
from probe.home import ProbeHome, ProbeIdentity
from probe.keys import KeyFileError, key_id, public_line
from probe.profile import load_profile
from probe.rules import load_ruleset
from probe.staging import Staging
from probe.taskpack import OpenedPack, PackRefused, open_pack, write_venue
from tests.packkit import COMMUNITY, SMALL, write_profile

TASK = "MW-2026-11"
PROBE = "pi-07"
AGENT_URL = "http://198.19.254.1:8765"
WITNESSES = [("张三", "3141592653"), ("李四", "5897932384")]
runner = CliRunner()


@dataclass
class Round:
    """An opened agent with a drawn round, its active picks and an enrolled probe (its home and identity)."""

    agent: Agent
    tmp: Path
    picks: list[DrawVenue]
    home: ProbeHome
    ident: ProbeIdentity
    secrets: dict[str, bytes]  # site id -> the secret written beside its profile

    def badge(self) -> str:
        """An officer on as few teams as possible (picks are random: two teams may share an officer)."""
        return min((b for pick in self.picks for b in team(pick)), key=lambda b: len(self.for_badge(b)))

    def for_badge(self, badge: str) -> list[DrawVenue]:
        return [p for p in self.picks if badge in team(p)]

    def store(self, picks: list[DrawVenue]) -> None:
        """The technician's profile of each pick (the small café's, under its site id and credit code), stored."""
        with self.agent.sessions() as db:
            for pick in picks:
                site = pick.venue.site_id
                source, secret = write_profile(self.tmp / "tech" / site, venue_id=site,
                                               credit_code=pick.venue.credit_code)
                self.secrets[site] = secret
                add_profile(db, self.agent.settings, source, actor=CLI, replace=True)

    def export(self, **kw) -> object:
        args = {"task": TASK, "probe_id": PROBE, "agent_url": AGENT_URL, "actor": CLI, **kw}
        args.setdefault("badges", [self.badge()] if "badges" not in kw else kw["badges"])
        with self.agent.sessions() as db:
            return export_pack(db, self.agent, **args)

    def open(self, envelope: bytes, when: datetime) -> OpenedPack:
        dept = department_key(self.agent.settings).public_key()
        return open_pack(envelope, {key_id(dept): dept}, PROBE, self.ident.private_key, when)


def drawn_round(tmp: Path, db_url: str, *, draw: bool = True) -> Round:
    """The demo district (every venue with a site id) imported, a plan for this year, task TASK prepared for today
    to ten days ahead and, unless ``draw`` is false, drawn with the witnesses' digits; probe PROBE enrolled."""
    agent = open_agent(Settings(data_dir=tmp / "agent", db_url=db_url))
    today = date.today()
    demo = write_demo_registries(tmp / "demo", venues=20, blacklisted=2, inspectors=6, closed=0,
                                 site_ids={n: f"FZ-MW-{n:04d}" for n in range(1, 21)})
    with agent.sessions() as db:
        for importer, path in ((registry.import_venues, demo.venues), (registry.import_inspectors, demo.inspectors),
                               (registry.import_conflicts, demo.conflicts)):
            importer(db, path.read_bytes(), path.name, CLI)
        registry.confirm_credit_code(db, demo.mismatch_code, CLI, "已核对营业执照原件")
        plan = create_plan(db, "FZ-MW", today.year, CLI)
        prepared = prepare_draw(db, plan.id, 1, TASK, "第1轮网吧抽查", today, today + timedelta(days=10), CLI)
        if draw:
            enter_draw(db, prepared.id, WITNESSES, None, CLI)
        picks = sorted((p for p in get_draw(db, TASK).venues if p.active), key=lambda p: p.id)
        home = ProbeHome(tmp / "probe-home")
        ident = home.keygen(PROBE)
        enroll_probe(db, PROBE, home.public_key_path.read_text(), "马尾-7号")
    return Round(agent=agent, tmp=tmp, picks=picks, home=home, ident=ident, secrets={})


@pytest.fixture()
def round_(tmp_path, db_url):
    made = drawn_round(tmp_path, db_url)
    yield made
    made.agent.engine.dispose()


def test_the_exported_pack_opens_on_its_probe_with_venues_team_agent_window_and_secrets(round_):
    badge = round_.badge()
    mine = round_.for_badge(badge)
    assert len(mine) < len(round_.picks) or len({tuple(sorted(team(p))) for p in round_.picks}) == 1
    round_.store(round_.picks)  # every pick has a profile; only the badge's venues go in
    pack = round_.export()
    settings = round_.agent.settings
    start = datetime.combine(date.today(), time(0), settings.zone)
    end = datetime.combine(date.today() + timedelta(days=11), time(0), settings.zone)
    assert (pack.not_before, pack.not_after) == (start, end) and start.utcoffset() == timedelta(hours=8)
    opened = round_.open(pack.envelope, start + timedelta(hours=9))
    p = opened.payload
    assert opened.sha256 == pack.sha256 and p.pack_id == pack.pack_id
    assert [v.venue_id for v in p.venues] == pack.venues == [pick.venue.site_id for pick in mine]
    for venue, pick in zip(p.venues, mine):
        assert venue.inspectors == team(pick) and badge in venue.inspectors
        assert (venue.name, venue.credit_code) == (pick.venue.name, pick.venue.credit_code)
        stored = (settings.profiles_dir / venue.venue_id / "profile.yaml").read_bytes()
        assert venue.profile_yaml.encode("utf-8") == stored
        assert opened.secrets[venue.venue_id] == {COMMUNITY: round_.secrets[venue.venue_id]}  # byte for byte
    assert (p.not_before, p.not_after) == (start, end)
    receipt_key = round_.agent.key.public_key()
    assert (p.agent.url, p.agent.public_key, p.agent.key_id) == (AGENT_URL, public_line(receipt_key),
                                                                  key_id(receipt_key))
    rules = load_ruleset()
    assert (p.ruleset.version, p.ruleset.sha256) == (rules.version, rules.sha256)
    assert (p.task.id, p.task.check_start, p.task.check_type) == (TASK, date.today().isoformat(), "undirected")
    assert p.issuer.name == "福州市公安局马尾分局" and p.probe.key_id == round_.ident.key_id
    dept = department_key(settings)
    assert p.issuer.key_id == key_id(dept.public_key()) != key_id(receipt_key)  # not the receipt key
    assert stat.S_IMODE(settings.department_key_path.stat().st_mode) == 0o600
    # No secret in the clear: not in the file, not in its payload, not in base64 either.
    payload = opened.payload_bytes
    for secret in round_.secrets.values():
        for form in (secret, base64.standard_b64encode(secret), secret.hex().encode()):
            assert form not in pack.envelope and form not in payload
    # What the probe lays down for a run loads as the venue's profile, its secret where the profile says.
    laid = write_venue(opened, mine[0].venue.site_id, round_.tmp / "run")
    assert load_profile(laid).servers.snmp[0].community_file.read_bytes() == round_.secrets[mine[0].venue.site_id]
    with round_.agent.sessions() as db:
        [entry] = db.scalars(select(AuditEntry).where(AuditEntry.action == "pack.export")).all()
    detail = json.loads(entry.detail)
    assert entry.subject == f"pack:{pack.pack_id}" and detail["sha256"] == pack.sha256
    assert (detail["probe_id"], detail["task"], detail["venues"], detail["badges"]) == (PROBE, TASK, pack.venues,
                                                                                          [badge])
    for secret in round_.secrets.values():
        assert secret.hex() not in entry.detail and base64.standard_b64encode(secret).decode() not in entry.detail


def test_the_probe_stages_what_the_department_exported_and_offers_its_venues_for_identification(round_):
    """The chain from the draw to a headless probe: export, pin the department key, stage, candidates."""
    round_.store(round_.picks)
    pack = round_.export()
    dept = department_key(round_.agent.settings).public_key()
    round_.home.pin_department(public_line(dept), "马尾分局")
    inside = pack.not_before + timedelta(hours=9)
    staging = Staging(round_.home)
    staging.stage(pack.envelope, now=inside)
    [entry] = staging.entries(now=inside)
    assert (entry.pack_id, entry.status) == (pack.pack_id, "valid")
    found = staging.candidates(now=inside)
    assert [c.venue.venue_id for c in found] == pack.venues
    assert all(c.network.subnets for c in found)
    assert round_.home.agent().url == AGENT_URL  # the pack's inspector device is where the reports go


def test_the_pack_is_for_this_probe_only_and_for_its_window(round_):
    round_.store(round_.for_badge(round_.badge()))
    pack = round_.export()
    other = ProbeHome(round_.tmp / "other-home").keygen("pi-08")
    dept = department_key(round_.agent.settings).public_key()
    inside = pack.not_before + timedelta(hours=1)
    with pytest.raises(PackRefused, match="another probe"):
        open_pack(pack.envelope, {key_id(dept): dept}, "pi-08", other.private_key, inside)
    with pytest.raises(PackRefused, match="expired"):
        round_.open(pack.envelope, pack.not_after + timedelta(hours=1))
    with pytest.raises(PackRefused, match="unknown key"):
        receipt = round_.agent.key.public_key()  # the receipt key must not pass for the department's
        open_pack(pack.envelope, {key_id(receipt): receipt}, PROBE, round_.ident.private_key, inside)


def test_a_given_window_and_agent_key_are_used_and_bad_ones_refused(round_):
    round_.store(round_.for_badge(round_.badge()))
    zone = round_.agent.settings.zone
    start = datetime.now(zone).replace(microsecond=0)
    device = Ed25519PrivateKey.generate().public_key()
    pack = round_.export(not_before=start, not_after=start + timedelta(hours=6), agent_public_key=public_line(device),
                         agent_url=AGENT_URL + "/")
    opened = round_.open(pack.envelope, start + timedelta(hours=1))
    assert (opened.payload.not_before, opened.payload.not_after) == (start, start + timedelta(hours=6))
    assert (opened.payload.agent.key_id, opened.payload.agent.url) == (key_id(device), AGENT_URL)
    for kw, words in ((dict(not_after=start - timedelta(days=1), not_before=start - timedelta(days=2)), "already over"),
                      (dict(not_before=start, not_after=start), "empty"),
                      (dict(not_before=start.replace(tzinfo=None)), "UTC offset"),
                      (dict(agent_url="ftp://device"), "http(s)"),
                      (dict(agent_public_key="ed25519:AAAA"), "32 bytes"),
                      (dict(badges=[" "]), "badge")):
        with pytest.raises(ApiError) as refused:
            round_.export(**kw)
        assert refused.value.status == 422 and words in refused.value.message, refused.value.message


def refusal(round_: Round, status: int, *words: str, **kw) -> str:
    with pytest.raises(ApiError) as refused:
        round_.export(**kw)
    assert refused.value.status == status, refused.value.message
    assert all(w in refused.value.message for w in words), refused.value.message
    return refused.value.message


def test_refusals_task_probe_badges_and_profiles(round_):
    refusal(round_, 404, "no such task", task="MW-2026-99")
    refusal(round_, 404, "not enrolled", probe_id="pi-99")
    refusal(round_, 409, "no venue of task", badges=["TP0001"])  # the third-party technician is on no team
    refusal(round_, 409, "not on any team", "35019999", badges=[round_.badge(), "35019999"])
    mine = round_.for_badge(round_.badge())
    # No profile stored: every venue is listed at once.
    message = refusal(round_, 409, "cannot export the pack", *(p.venue.credit_code for p in mine))
    assert all(f"no stored profile for venue {p.venue.site_id}" in message for p in mine)
    # A profile whose secret lies outside its folder never gets into the store, so the venue still has none.
    site = mine[0].venue.site_id
    text = SMALL.read_text(encoding="utf-8").replace(f"community_file: {COMMUNITY}", "community_file: ../x.community")
    source, _ = write_profile(round_.tmp / "outside" / site, venue_id=site, credit_code=mine[0].venue.credit_code,
                              text=text, secret_name="../x.community")
    with round_.agent.sessions() as db, pytest.raises(ProfileRefused, match="outside the profile's folder"):
        add_profile(db, round_.agent.settings, source, actor=CLI)
    refusal(round_, 409, f"no stored profile for venue {site}")
    # A registry venue without a site id cannot be linked to any profile.
    round_.store(mine)
    with round_.agent.sessions() as db:
        registry.save_venue(db, {"credit_code": mine[0].venue.credit_code, "site_id": ""}, CLI)
    refusal(round_, 409, mine[0].venue.credit_code, "no site id")
    with round_.agent.sessions() as db:
        registry.save_venue(db, {"credit_code": mine[0].venue.credit_code, "site_id": site}, CLI)
        revoke_probe(db, PROBE)
    refusal(round_, 409, "revoked")
    with round_.agent.sessions() as db:
        assert db.scalars(select(AuditEntry).where(AuditEntry.action == "pack.export")).all() == []


def test_a_round_not_drawn_yet_is_refused_then_drawn_and_published_it_exports(tmp_path, db_url):
    made = drawn_round(tmp_path, db_url, draw=False)
    try:
        with made.agent.sessions() as db:
            assert get_draw(db, TASK).state == "prepared" and not made.picks
        refusal(made, 409, "not drawn yet", badges=["350100001"])
        with made.agent.sessions() as db:
            enter_draw(db, get_draw(db, TASK).id, WITNESSES, None, CLI)
            made.picks = sorted((p for p in get_draw(db, TASK).venues if p.active), key=lambda p: p.id)
        made.store(made.for_badge(made.badge()))
        drawn = made.export()
        with made.agent.sessions() as db:
            publish_draw(db, get_draw(db, TASK).id, CLI)
            assert db.scalar(select(Draw.state)) == "published"
        published = made.export()
        assert published.venues == drawn.venues and published.pack_id != drawn.pack_id
    finally:
        made.agent.engine.dispose()


def test_cli_enroll_by_code_store_profiles_export_and_list(tmp_path, db_url):
    made = drawn_round(tmp_path, db_url)
    try:
        where = ["--data", str(made.agent.settings.data_dir), "--db", db_url]
        fresh = ProbeHome(tmp_path / "pi-09")
        ident = fresh.keygen("pi-09")
        code = fresh.enrollment_code()
        assert runner.invoke(cli, ["enroll-probe", *where]).exit_code == 1  # neither a file nor a code
        wrong = runner.invoke(cli, ["enroll-probe", "--code", code, "--probe-id", "pi-10", *where])
        assert wrong.exit_code == 1 and "differs" in wrong.output
        enrolled = runner.invoke(cli, ["enroll-probe", "--code", code, "--label", "马尾-9号", *where])
        assert enrolled.exit_code == 0, enrolled.output
        assert "enrolled: pi-09" in enrolled.output and ident.key_id in enrolled.output
        mine = made.for_badge(made.badge())
        for pick in mine:
            source, made.secrets[pick.venue.site_id] = write_profile(tmp_path / "tech" / pick.venue.site_id,
                                                                     venue_id=pick.venue.site_id,
                                                                     credit_code=pick.venue.credit_code)
            added = runner.invoke(cli, ["profile", "add", str(source), *where])
            assert added.exit_code == 0 and "no registry venue" not in added.output, added.output
        shown = runner.invoke(cli, ["pack", "key", *where])
        dept = department_key(made.agent.settings).public_key()
        assert shown.exit_code == 0 and shown.output.split() == [public_line(dept), key_id(dept)]
        device_key = tmp_path / "device.pub"
        device_key.write_text(public_line(made.agent.key.public_key()) + "\n")
        out = tmp_path / "pi-09.pack.json"
        exported = runner.invoke(cli, ["pack", "export", "--task", TASK, "--probe", "pi-09", "--badge", made.badge(),
                                       "--agent-url", AGENT_URL, "--agent-key", str(device_key), "--out", str(out),
                                       *where])
        assert exported.exit_code == 0, exported.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        opened = open_pack(out.read_bytes(), {key_id(dept): dept}, "pi-09", ident.private_key,
                           datetime.now(made.agent.settings.zone))
        assert [v.venue_id for v in opened.payload.venues] == [p.venue.site_id for p in mine]
        assert {v: files[COMMUNITY] for v, files in opened.secrets.items()} == made.secrets
        assert opened.payload.pack_id in exported.output and opened.sha256 in exported.output
        assert "+08:00" in exported.output
        refused = runner.invoke(cli, ["pack", "export", "--task", TASK, "--probe", "pi-09", "--badge", "TP0001",
                                      "--agent-url", AGENT_URL, "--out", str(tmp_path / "none.json"), *where])
        assert refused.exit_code == 1 and "no venue" in refused.output and not (tmp_path / "none.json").exists()
        listed = runner.invoke(cli, ["pack", "list", *where])
        assert listed.exit_code == 0 and opened.payload.pack_id in listed.output and "pi-09" in listed.output
        for result in (exported, listed, shown):
            for secret in made.secrets.values():
                assert secret.hex() not in result.output
    finally:
        made.agent.engine.dispose()


def test_the_department_key_is_made_once_and_a_half_pair_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    first = department_key(settings)
    assert key_id(department_key(settings).public_key()) == key_id(first.public_key())
    settings.department_pub_path.unlink()
    with pytest.raises(KeyFileError, match="must both exist"):
        department_key(settings)
    assert not settings.department_pub_path.exists()  # nothing made over the half pair
