"""The department's venue-profile store (agent_api.venue_profiles, ``cafe-agent profile``) on SQLite and PostgreSQL:
private copies of a profile and its secret files, every problem listed on refusal, explicit and audited
replacement, the registry link warned about, and no secret content in any output or log entry."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agent_api import ApiError
from agent_api.app import open_agent
from agent_api.audit import CLI, verify_chain
from agent_api.cli import app as cli
from agent_api.db import AuditEntry
from agent_api.dept_tables import Venue
from agent_api.settings import Settings
from agent_api.venue_profiles import (PROFILE_FILE, ProfileRefused, add_profile, get_profile, list_profiles,
                                      remove_profile)
from probe.profile import load_profile
from tests.packkit import COMMUNITY, SMALL, VENUE, write_profile

AT = datetime(2026, 3, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
runner = CliRunner()

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def audit(agent, action: str) -> list[AuditEntry]:
    with agent.sessions() as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


@pytest.fixture()
def agent(tmp_path, db_url):
    opened = open_agent(Settings(data_dir=tmp_path / "agent", db_url=db_url))
    yield opened
    opened.engine.dispose()


def test_a_profile_is_stored_as_a_private_copy_with_its_secrets_and_audited(agent, tmp_path):
    source, secret = write_profile(tmp_path / "tech")
    with agent.sessions() as db:
        added = add_profile(db, agent.settings, source, actor=CLI)
    stored = added.stored
    folder = agent.settings.profiles_dir / VENUE
    assert stored.directory == folder and added.replaced_sha256 is None
    assert (folder / PROFILE_FILE).read_bytes() == source.read_bytes()
    assert (folder / COMMUNITY).read_bytes() == secret
    assert {mode(agent.settings.profiles_dir), mode(folder), mode(folder / "secrets")} == {0o700}
    assert mode(folder / PROFILE_FILE) == mode(folder / COMMUNITY) == 0o600
    assert sorted(p.name for p in agent.settings.profiles_dir.iterdir()) == [VENUE]  # no staging folder left
    assert stored.secret_paths == [COMMUNITY] and stored.secret_files() == {COMMUNITY: secret}
    # The copy loads on its own: its secrets resolve inside the store, not in the technician's folder.
    assert load_profile(stored.path).servers.snmp[0].community_file == folder / COMMUNITY
    # No registry venue has this site id yet: stored, with a warning saying what a pack will need.
    assert any("no registry venue has site id LAB-SMALL-0030" in w for w in added.warnings)
    assert list_profiles(agent.settings) == [VENUE] and get_profile(agent.settings, VENUE).sha256 == stored.sha256
    [entry] = audit(agent, "profile.add")
    detail = json.loads(entry.detail)
    assert entry.subject == f"profile:{VENUE}" and detail["sha256"] == stored.sha256
    assert detail["secret_paths"] == [COMMUNITY] and detail["replaced_sha256"] is None
    assert secret.hex() not in entry.detail and "snmp.community" in entry.detail


def test_a_bad_profile_is_refused_with_every_problem_and_nothing_stored(agent, tmp_path):
    text = SMALL.read_text(encoding="utf-8").replace("subnets: [198.18.5.0/24]", "subnets: [198.18.5.0/33]")
    text = text.replace("  first_address: 198.18.5.101", "  first_adress: 198.18.5.101")
    source, _ = write_profile(tmp_path / "tech", text=text)
    (tmp_path / "tech" / COMMUNITY).chmod(0o644)
    with agent.sessions() as db, pytest.raises(ProfileRefused) as refused:
        add_profile(db, agent.settings, source, actor=CLI)
    problems = "\n".join(refused.value.problems)
    assert "network.subnets[0]" in problems and "terminals.first_adress" in problems
    assert "chmod 600" in problems and len(refused.value.problems) >= 3
    assert list_profiles(agent.settings) == [] and audit(agent, "profile.add") == []


def test_a_secret_outside_the_profiles_folder_is_refused(agent, tmp_path):
    text = SMALL.read_text(encoding="utf-8").replace(f"community_file: {COMMUNITY}",
                                                     "community_file: ../shared/snmp.community")
    source, _ = write_profile(tmp_path / "tech", text=text, secret_name="../shared/snmp.community")
    assert load_profile(source)  # a valid profile for a probe run from this folder, but not one a pack can carry
    with agent.sessions() as db, pytest.raises(ProfileRefused) as refused:
        add_profile(db, agent.settings, source, actor=CLI)
    assert "outside the profile's folder" in refused.value.message
    assert list_profiles(agent.settings) == [] and audit(agent, "profile.add") == []


def test_a_venue_id_that_is_no_folder_name_is_refused(agent, tmp_path):
    source, _ = write_profile(tmp_path / "tech", venue_id="'../LAB-SMALL-0030'")
    with agent.sessions() as db, pytest.raises(ApiError) as refused:
        add_profile(db, agent.settings, source, actor=CLI)
    assert refused.value.code == "bad_venue_id"
    assert not agent.settings.profiles_dir.exists() or list_profiles(agent.settings) == []


def test_replacing_is_explicit_and_audited_and_leaves_nothing_of_the_old_copy(agent, tmp_path):
    first, _ = write_profile(tmp_path / "v1")
    second, secret = write_profile(tmp_path / "v2", secret_name="secrets/router.community")
    with agent.sessions() as db:
        old = add_profile(db, agent.settings, first, actor=CLI).stored
        with pytest.raises(ApiError) as refused:
            add_profile(db, agent.settings, second, actor=CLI)
        assert refused.value.status == 409 and "--replace" in refused.value.message
        assert get_profile(agent.settings, VENUE).sha256 == old.sha256  # untouched
        new = add_profile(db, agent.settings, second, actor=CLI, replace=True)
    folder = agent.settings.profiles_dir / VENUE
    assert new.replaced_sha256 == old.sha256 and new.stored.secret_paths == ["secrets/router.community"]
    assert not (folder / COMMUNITY).exists() and (folder / "secrets/router.community").read_bytes() == secret
    assert sorted(p.name for p in agent.settings.profiles_dir.iterdir()) == [VENUE]
    [entry] = audit(agent, "profile.replace")
    assert json.loads(entry.detail)["replaced_sha256"] == old.sha256
    assert json.loads(entry.detail)["sha256"] == new.stored.sha256
    with agent.sessions() as db:
        assert remove_profile(db, agent.settings, VENUE, actor=CLI) == new.stored.sha256
        assert verify_chain(db).ok
    assert not folder.exists() and list_profiles(agent.settings) == []
    assert [json.loads(e.detail)["sha256"] for e in audit(agent, "profile.remove")] == [new.stored.sha256]
    with pytest.raises(ApiError) as gone:
        get_profile(agent.settings, VENUE)
    assert gone.value.status == 404


def test_the_registry_link_is_checked(agent, tmp_path):
    with agent.sessions() as db:
        db.add(Venue(credit_code="91350105MA2Y0AB12L", name="实验网咖（小）", address="实验环境", legal_rep="王五",
                     industry="互联网上网服务", jurisdiction="FZ-MW", status="open", site_id=VENUE, code_check="ok",
                     created_at=AT, updated_at=AT))
        db.commit()
        linked = add_profile(db, agent.settings, write_profile(tmp_path / "v1")[0], actor=CLI)
        assert not [w for w in linked.warnings if "registry" in w]
        other = write_profile(tmp_path / "v2", credit_code="91350105MA2Y0AB13J")[0]
        differs = add_profile(db, agent.settings, other, actor=CLI, replace=True)
        assert any("credit code differs from the registry's" in w for w in differs.warnings)


def test_cli_add_list_show_replace_remove(agent, tmp_path, db_url):
    source, secret = write_profile(tmp_path / "tech")
    where = ["--data", str(agent.settings.data_dir), "--db", db_url]
    added = runner.invoke(cli, ["profile", "add", str(source), *where])
    assert added.exit_code == 0, added.output
    assert f"stored: {VENUE}" in added.output and COMMUNITY in added.output
    assert "no registry venue has site id" in added.output  # the warning (stderr)
    again = runner.invoke(cli, ["profile", "add", str(source), *where])
    assert again.exit_code == 1 and "--replace" in again.output
    replaced = runner.invoke(cli, ["profile", "add", str(source), "--replace", *where])
    assert replaced.exit_code == 0 and f"replaced: {VENUE}" in replaced.output
    listed = runner.invoke(cli, ["profile", "list", *where])
    assert listed.exit_code == 0 and VENUE in listed.output and "not in registry" in listed.output
    shown = runner.invoke(cli, ["profile", "show", VENUE, *where])
    assert shown.exit_code == 0 and get_profile(agent.settings, VENUE).sha256 in shown.output
    bad = tmp_path / "bad"
    bad_source, _ = write_profile(bad, text="venue: {id: X}\nnetwork: {}\n")
    refused = runner.invoke(cli, ["profile", "add", str(bad_source), *where])
    assert refused.exit_code == 1 and "venue.name" in refused.output and "terminals" in refused.output
    removed = runner.invoke(cli, ["profile", "remove", VENUE, *where])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert runner.invoke(cli, ["profile", "show", VENUE, *where]).exit_code == 1
    for result in (added, again, replaced, listed, shown, refused, removed):
        assert secret.hex() not in result.output and repr(secret) not in result.output
    assert os.listdir(agent.settings.profiles_dir) == []
