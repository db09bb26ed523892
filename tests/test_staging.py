"""Staging task packs on a probe: real keys, real packs and files, the CLI as the technician runs it."""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from probe.cli import app
from probe.home import ProbeHome
from probe.keys import public_line
from probe.rules import load_ruleset
from probe.staging import Staging
from probe.taskpack import PackRefused, write_venue
from tests.packkit import lab_profile, make_pack, new_agent_key_line

runner = CliRunner()
AGENT_URL = "http://198.19.254.1:8765"
OTHER_AGENT_URL = "http://198.19.254.5:8765"


@dataclass
class Bench:
    """A fresh probe home, two lab profiles with secrets, one department key and one inspector device."""

    tmp: Path
    home: ProbeHome
    small: Path
    messy: Path
    secrets: dict[str, dict[str, str]]  # venue id -> secret file name -> value
    agent_line: str
    department: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def pack(self, **kw) -> bytes:
        kw.setdefault("department_key", self.department)
        venues = kw.pop("venues", [(self.small, ["J-0001", "J-0002"]), (self.messy, ["J-0003"])])
        agent_url = kw.pop("agent_url", AGENT_URL)
        agent_line = kw.pop("agent_line", self.agent_line)
        home = kw.pop("home", self.home)
        data, _ = make_pack(self.tmp / "dept", home, venues, agent_url, agent_line, **kw)
        return data

    def pin(self) -> None:
        self.home.pin_department(public_line(self.department.public_key()), "测试部门 test department")

    def cli(self, *args: str):
        return runner.invoke(app, [*args, "--home", str(self.home.root)])

    def stored(self) -> list[Path]:
        d = self.home.staged_path
        return sorted(d.iterdir()) if d.exists() else []


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-a")
    small, small_secrets = lab_profile(tmp_path / "profiles", "small")
    messy, messy_secrets = lab_profile(tmp_path / "profiles", "messy")
    return Bench(tmp=tmp_path, home=home, small=small, messy=messy, secrets={"LAB-SMALL-0030": small_secrets, "LAB-MESSY-0250": messy_secrets},
                 agent_line=new_agent_key_line())


def _refused(result) -> str:
    """The CLI refused: exit 2, nothing on stdout, one line on stderr, which is returned."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _flip(data: bytes, index: int) -> bytes:
    """``data`` with the byte at ``index`` changed to another character of the same kind."""
    old = data[index:index + 1]
    new = {b"A": b"B", b"{": b"["}.get(old, b"A" if old != b"A" else b"C")
    assert new != old
    return data[:index] + new + data[index + 1:]


# -- the four refusals the issue names, and the others --------------------------------------------------------

def test_tampered_pack_refused_at_every_position(bench: Bench) -> None:
    bench.pin()
    data = bench.pack()
    doc = json.loads(data)
    payload_at = data.index(doc["payload"].encode())
    sig_at = data.index(doc["signatures"][0]["sig"].encode())
    positions = {
        "payload start": payload_at + 10,
        "payload middle": payload_at + len(doc["payload"]) // 2,
        "payload end": payload_at + len(doc["payload"]) - 8,
        "signature": sig_at + 20,
        "JSON structure": 0,
        "JSON colon": data.index(b'"payloadType"') + len(b'"payloadType"'),
    }
    reasons = {}
    for where, index in positions.items():
        bad = _flip(data, index)
        assert bad != data and len(bad) == len(data)
        pack_file = bench.tmp / "bad.dsse.json"
        pack_file.write_bytes(bad)
        line = _refused(bench.cli("stage", str(pack_file)))
        reasons[where] = line
        assert "pack not staged" in line, where
        assert "tampered" in line or "not a valid task pack" in line, (where, line)
        with pytest.raises(PackRefused):
            Staging(bench.home).stage(bad)
    for where in ("payload start", "payload middle", "payload end", "signature"):
        assert "tampered with: the signature does not match" in reasons[where]
    assert "not valid JSON" in reasons["JSON structure"]
    assert bench.stored() == []
    assert not bench.home.agent_path.exists()
    # The untouched pack stages: the refusals came from the changed byte alone.
    pack = Staging(bench.home).stage(data)
    assert bench.stored() == [bench.home.staged_path / f"{pack.payload.pack_id}.dsse.json"]


def test_four_refusals_each_with_its_reason(bench: Bench, tmp_path: Path) -> None:
    bench.pin()
    now = datetime.now(timezone.utc)
    other_home = ProbeHome(tmp_path / "other-home")
    other_home.keygen("probe-b")
    cases = {
        "tampered": _flip(bench.pack(), 400),
        "expired": bench.pack(not_before=now - timedelta(days=3), not_after=now - timedelta(days=1)),
        "another probe (id)": bench.pack(probe_id="probe-b"),
        "another probe (key)": bench.pack(home=other_home),
        "unknown key": bench.pack(department_key=Ed25519PrivateKey.generate()),
    }
    expected = {
        "tampered": "tampered with",
        "expired": "pack expired at",
        "another probe (id)": "pack is for another probe",
        "another probe (key)": "pack is for another probe",
        "unknown key": "pack signed by an unknown key",
    }
    for name, data in cases.items():
        pack_file = bench.tmp / f"{name}.dsse.json"
        pack_file.write_bytes(data)
        line = _refused(bench.cli("stage", str(pack_file)))
        assert expected[name] in line, (name, line)
        for other, words in expected.items():
            if words != expected[name]:
                assert words not in line, (name, line)
    assert bench.stored() == []
    assert not bench.home.agent_path.exists()


def test_no_department_pinned_refused(bench: Bench) -> None:
    pack_file = bench.tmp / "p.dsse.json"
    pack_file.write_bytes(bench.pack())
    assert "pin-department" in _refused(bench.cli("stage", str(pack_file)))
    assert bench.stored() == []


def test_ruleset_version_mismatch_refused(bench: Bench) -> None:
    bench.pin()
    pack_file = bench.tmp / "p.dsse.json"
    pack_file.write_bytes(bench.pack(ruleset_version="1999.1.1"))
    line = _refused(bench.cli("stage", str(pack_file)))
    assert "ruleset 1999.1.1" in line and f"judges by {load_ruleset().version}" in line
    assert bench.stored() == []


def test_staged_pack_refused_when_the_probe_rules_change(bench: Bench, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bench.pin()
    staging = Staging(bench.home)
    staging.stage(bench.pack())
    shipped = load_ruleset()
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).resolve().parent.parent / "rules", rules)
    header = rules / "ruleset.yaml"
    header.write_text(header.read_text(encoding="utf-8") + "# a local edit\n", encoding="utf-8")
    monkeypatch.setenv("CAFE_PROBE_RULES", str(rules))
    [entry] = staging.entries()
    assert entry.status == "refused" and "differs in content" in entry.reason
    assert staging.open_valid() == [] and staging.candidates() == []
    header.write_text(header.read_text(encoding="utf-8").replace(f'version: "{shipped.version}"',
                                                                 'version: "2099.1.1"'), encoding="utf-8")
    [entry] = staging.entries()
    assert entry.status == "refused" and "this probe judges by 2099.1.1" in entry.reason


# -- staging what is good ---------------------------------------------------------------------------------------

def test_stage_shows_pack_and_stores_it_sealed(bench: Bench) -> None:
    result = bench.cli("pin-department", "--pubkey", str(bench.tmp / "dept" / "department.pub"), "--name", "部门")
    assert "unrecognised public key" in _refused(result)  # no such file yet: refused, not a traceback
    data = bench.pack()
    result = bench.cli("pin-department", "--pubkey", str(bench.tmp / "dept" / "department.pub"), "--name", "部门")
    assert result.exit_code == 0, result.stderr
    pack_file = bench.tmp / "round.dsse.json"
    pack_file.write_bytes(data)
    result = bench.cli("stage", str(pack_file))
    assert result.exit_code == 0, result.stderr
    [entry] = Staging(bench.home).entries()
    text = result.stdout
    for expected in (entry.pack_id, "TASK-2024-0001", "LAB-SMALL-0030", "LAB-MESSY-0250", "J-0001, J-0002",
                     "J-0003", AGENT_URL, "+08:00", "部门", load_ruleset().version, "有效 valid"):
        assert expected in text, expected
    # Stored as received, 0600 in a 0700 directory; the inspector device pinned from the pack.
    stored = bench.home.staged_path / f"{entry.pack_id}.dsse.json"
    assert bench.stored() == [stored] and stored.read_bytes() == data
    assert _mode(stored) == 0o600 and _mode(bench.home.staged_path) == 0o700
    agent = bench.home.agent()
    assert agent.url == AGENT_URL and public_line(agent.public_key) == bench.agent_line
    # The secrets never lie under the home in the clear (only sealed), yet the pack carries them.
    assert Staging(bench.home).open_valid()[0].secrets["LAB-SMALL-0030"]["secrets/snmp.community"] == \
        (bench.secrets["LAB-SMALL-0030"]["snmp.community"] + "\n").encode()
    for path in bench.home.root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for venue, values in bench.secrets.items():
                for name, value in values.items():
                    assert value.encode() not in content, (path, venue, name)


def test_restage_is_idempotent_and_a_changed_pack_of_one_id_refused(bench: Bench) -> None:
    bench.pin()
    data = bench.pack(pack_id="0b7f3d0e-6a51-4c39-9a5e-3f1d2c4b5a69")
    staging = Staging(bench.home)
    staging.stage(data)
    stored = bench.stored()[0]
    before = stored.stat()
    pack_file = bench.tmp / "p.dsse.json"
    pack_file.write_bytes(data)
    assert bench.cli("stage", str(pack_file)).exit_code == 0
    assert bench.stored() == [stored] and stored.stat().st_mtime_ns == before.st_mtime_ns
    assert len(staging.entries()) == 1
    other = bench.pack(pack_id="0b7f3d0e-6a51-4c39-9a5e-3f1d2c4b5a69", venues=[(bench.small, ["J-0009"])])
    pack_file.write_bytes(other)
    line = _refused(bench.cli("stage", str(pack_file)))
    assert "a different pack with the same id" in line
    assert stored.read_bytes() == data


def test_not_yet_valid_pack_staged_and_statuses_over_time(bench: Bench) -> None:
    bench.pin()
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    staging = Staging(bench.home)
    early = bench.pack(not_before=t0, not_after=t0 + timedelta(days=1), task_id="TASK-EARLY")
    late = bench.pack(not_before=t0 + timedelta(days=2), not_after=t0 + timedelta(days=3), task_id="TASK-LATE")
    staging.stage(early, now=t0 - timedelta(days=1))  # staged the day before the round
    staging.stage(late, now=t0 - timedelta(days=1))
    with pytest.raises(PackRefused, match="pack expired at"):
        staging.stage(early, now=t0 + timedelta(days=1, hours=1))

    def statuses(now: datetime) -> dict[str, str]:
        return {e.task_id: e.status for e in staging.entries(now)}

    assert statuses(t0 - timedelta(hours=1)) == {"TASK-EARLY": "not_yet", "TASK-LATE": "not_yet"}
    assert staging.open_valid(t0 - timedelta(hours=1)) == [] and staging.candidates(t0 - timedelta(hours=1)) == []
    noon = t0 + timedelta(hours=3)
    assert statuses(noon) == {"TASK-EARLY": "valid", "TASK-LATE": "not_yet"}
    [opened] = staging.open_valid(noon)
    assert opened.payload.task.id == "TASK-EARLY"
    cands = staging.candidates(noon)
    assert [(c.venue.venue_id, [str(n) for n in c.network.subnets]) for c in cands] == [
        ("LAB-SMALL-0030", ["198.18.5.0/24"]), ("LAB-MESSY-0250", ["198.18.10.0/24"])]
    assert [str(g) for g in cands[0].network.gateways] == ["198.18.5.1"]
    assert statuses(t0 + timedelta(days=2, hours=1)) == {"TASK-EARLY": "expired", "TASK-LATE": "valid"}
    expired = next(e for e in staging.entries(t0 + timedelta(days=2, hours=1)) if e.task_id == "TASK-EARLY")
    assert "pack expired at" in expired.reason
    assert statuses(t0 + timedelta(days=4)) == {"TASK-EARLY": "expired", "TASK-LATE": "expired"}
    # A venue laid out for a run gets its secrets 0600 in the run's own directory, not in the home.
    run_dir = bench.tmp / "run" / "venue"
    profile = write_venue(opened, "LAB-SMALL-0030", run_dir)
    assert profile.read_text(encoding="utf-8") == bench.small.read_text(encoding="utf-8")
    assert _mode(run_dir / "secrets" / "snmp.community") == 0o600


def test_list_remove_and_prune(bench: Bench) -> None:
    bench.pin()
    staging = Staging(bench.home)
    now = datetime.now(timezone.utc)
    past = bench.pack(not_before=now - timedelta(days=3), not_after=now - timedelta(days=2), task_id="TASK-OLD")
    staging.stage(past, now=now - timedelta(days=2, hours=12))
    current = bench.pack(task_id="TASK-NOW")
    pack_file = bench.tmp / "now.dsse.json"
    pack_file.write_bytes(current)
    assert bench.cli("stage", str(pack_file)).exit_code == 0
    listing = bench.cli("stage", "--list")
    assert listing.exit_code == 0, listing.stderr
    rows = {line.split("│")[2].strip(): line for line in listing.stdout.splitlines() if "TASK-" in line}
    assert "已过期 expired" in rows["TASK-OLD"] and "有效 valid" in rows["TASK-NOW"]
    assert "+08:00" in listing.stdout and "LAB-SMALL-0030" in listing.stdout
    pruned = bench.cli("stage", "--prune")
    assert pruned.exit_code == 0 and "1 removed" in pruned.stdout
    assert [e.task_id for e in staging.entries()] == ["TASK-NOW"]
    [entry] = staging.entries()
    assert "no staged pack" in _refused(bench.cli("stage", "--remove", "ffffffff"))
    removed = bench.cli("stage", "--remove", entry.pack_id[:8])
    assert removed.exit_code == 0 and entry.pack_id in removed.stdout
    assert bench.stored() == []
    assert "one of --list" in _refused(bench.cli("stage", "--list", "--prune"))


def test_agent_pinned_from_the_pack_and_a_second_device_refused(bench: Bench) -> None:
    bench.pin()
    staging = Staging(bench.home)
    first = bench.pack(task_id="TASK-1")
    staging.stage(first)
    assert bench.home.agent().url == AGENT_URL
    same_device = bench.pack(task_id="TASK-2")
    staging.stage(same_device)  # a second round for the same device stages
    other_line = new_agent_key_line()
    other = bench.pack(task_id="TASK-3", agent_url=OTHER_AGENT_URL, agent_line=other_line)
    pack_file = bench.tmp / "other.dsse.json"
    pack_file.write_bytes(other)
    line = _refused(bench.cli("stage", str(pack_file)))
    assert "name another inspector device" in line and "cafe-probe stage --remove" in line
    assert all(e.pack_id in line for e in staging.entries()) and OTHER_AGENT_URL in line
    assert len(bench.stored()) == 2 and bench.home.agent().url == AGENT_URL
    # Same URL, another key: a different device all the same.
    with pytest.raises(PackRefused, match="another inspector device"):
        staging.stage(bench.pack(task_id="TASK-4", agent_line=other_line))
    # Once the packs naming the first device are gone, the new device is pinned.
    for e in staging.entries():
        staging.remove(e.pack_id)
    assert bench.cli("stage", str(pack_file)).exit_code == 0
    pinned = bench.home.agent()
    assert pinned.url == OTHER_AGENT_URL and public_line(pinned.public_key) == other_line
    # An expired pack naming another device does not block.
    later = datetime.now(timezone.utc) + timedelta(days=5)
    staging.stage(bench.pack(task_id="TASK-5", not_before=later - timedelta(hours=1),
                             not_after=later + timedelta(days=1)), now=later)
    assert bench.home.agent().url == AGENT_URL


def test_department_keys_rotation_and_unpin(bench: Bench) -> None:
    bench.pin()
    staging = Staging(bench.home)
    old_pack = staging.stage(bench.pack(task_id="TASK-OLDKEY")).payload.pack_id
    new_key = Ed25519PrivateKey.generate()
    result = bench.cli("pin-department", "--pubkey", public_line(new_key.public_key()), "--name", "新密钥 new key")
    assert result.exit_code == 0 and "2 key(s) pinned" in result.stdout
    new_pack = staging.stage(bench.pack(task_id="TASK-NEWKEY", department_key=new_key)).payload.pack_id
    assert {e.status for e in staging.entries()} == {"valid"}
    # The key id in the file is never trusted: a forged one changes nothing.
    doc = json.loads(bench.home.departments_path.read_text())
    doc[0]["key_id"] = "0" * 64
    bench.home.departments_path.write_text(json.dumps(doc))
    assert "0" * 64 not in bench.home.departments()
    old_id = bench.home.pinned_departments()[0].key_id
    assert "no pinned department key" in _refused(bench.cli("pin-department", "--remove", ""))
    result = bench.cli("pin-department", "--remove", old_id[:10])
    assert result.exit_code == 0, result.stderr
    statuses = {e.pack_id: (e.status, e.reason, e.task_id) for e in staging.entries()}
    assert statuses[new_pack] == ("valid", "", "TASK-NEWKEY")
    # What a refused file claims is not shown: only its id (from the file name) and why it is refused.
    status, reason, task = statuses[old_pack]
    assert status == "refused" and "unknown key" in reason and task == ""
    assert "no pinned department key" in _refused(bench.cli("pin-department", "--remove", old_id[:10]))
    assert "department key" in _refused(bench.cli("pin-department", "--pubkey", "ed25519:short", "--name", "x"))
    listing = bench.cli("pin-department", "--list")
    assert listing.exit_code == 0 and "新密钥 new key" in listing.stdout


def test_secret_files_and_home_modes_after_staging(bench: Bench) -> None:
    bench.pin()
    Staging(bench.home).stage(bench.pack())
    assert _mode(bench.home.private_key_path) == 0o600
    for path in bench.home.staged_path.iterdir():
        assert _mode(path) == 0o600
    assert not any(p.name.startswith(".") for p in bench.home.staged_path.iterdir())  # no temporary left
    assert os.access(bench.home.departments_path, os.R_OK)
