"""``cafe-probe selftest``: each item passes on a probe made ready, and each can be made to fail and says why.

Everything is real: a probe home made by keygen, a department key pinned, a
pack signed and staged as the department exports it (tests.packkit), a
``cafe-agent serve`` for the clock, files and modes on disk, a fake LED class
tree in tmp_path. Tests run as root, where ``chmod`` stops no write: an
unwritable place is made with a read-only bind mount inside a private mount
namespace (``unshare --mount``: the mount vanishes with the process and never
touches the host's), or a file where a directory should be.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from probe.clock import check_clock
from hardware.profiles import HardwareProfile, load_hardware
from probe.selftest import ITEM_LABELS, SelfTestItem, run_selftest
from lab.build import running
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line
from probe.outbox import MAX_PENDING, Outbox
from probe.rules import RULES_ENV, load_ruleset, rules_directory
from probe.staging import Staging
from tests.agentkit import free_port, served_agent, setup_agent
from tests.conftest import VENV_BIN, new_lab_id
from tests.packkit import lab_profile, make_pack

CAFE_PROBE = str(VENV_BIN / "cafe-probe")


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    """A real inspector device on 127.0.0.1: (url, its key line)."""
    root = tmp_path_factory.mktemp("selftest-agent")
    setup_agent(root / "data")
    key_line = public_line(load_public_key(root / "data" / "agent.pub"))
    with served_agent(root / "data", root / "agent.log") as url:
        yield url, key_line


def fake_leds(root: Path, names: list[str]) -> Path:
    """A fake LED class tree: ``<root>/<name>/{brightness,max_brightness,trigger}``."""
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "brightness").write_text("0\n")
        (root / name / "max_brightness").write_text("1\n")
        (root / name / "trigger").write_text("[none] timer heartbeat\n")
    return root


def hardware_yaml(path: Path, leds_root: Path, *, status: str = "fake-act", alert: str = "fake-pwr",
                  min_free_megabytes: int = 1, cafe_port: str = "eth0", officer_link: str = "off0") -> Path:
    """A whole hardware profile file as a technician would write one for a probe."""
    path.write_text(f"""name: testbox
description: {{zh: 测试探针, en: test probe}}
cafe_port: {{name: {cafe_port}}}
officer_link: {{name: {officer_link}, kind: usb-ethernet}}
leds: {{status: [{status}], alert: [{alert}]}}
leds_root: {leds_root}
capture: {{user: cafe-probe, capabilities: [CAP_NET_RAW, CAP_NET_ADMIN]}}
clock_tolerance_seconds: 2
min_free_megabytes: {min_free_megabytes}
""", encoding="utf-8")
    return path


@dataclass
class Ready:
    """A probe made ready for a round: keys, a department pinned, one pack staged (agent pinned by it)."""

    home: ProbeHome
    hardware: HardwareProfile
    hardware_file: Path
    pack_id: str
    tmp: Path


def ready_probe(tmp: Path, agent_url: str, agent_key: str, **pack: object) -> Ready:
    home = ProbeHome(tmp / "home")
    home.keygen("probe-selftest")
    profile, _secrets = lab_profile(tmp / "profiles", "small")
    envelope, _dept = make_pack(tmp / "dept", home, [(profile, ["350100123", "350100456"])], agent_url, agent_key,
                                **pack)
    home.pin_department((tmp / "dept" / "department.pub").read_text(), "测试支队 / test department")
    stage_at = pack.get("not_before")
    opened = Staging(home).stage(envelope, now=stage_at + timedelta(minutes=1) if stage_at else None)
    leds = fake_leds(tmp / "leds", ["fake-act", "fake-pwr"])
    hw_file = hardware_yaml(tmp / "hardware.yaml", leds)
    return Ready(home=home, hardware=load_hardware(str(hw_file)), hardware_file=hw_file,
                 pack_id=opened.payload.pack_id, tmp=tmp)


@pytest.fixture
def ready(tmp_path, agent) -> Ready:
    return ready_probe(tmp_path, *agent)


def items(found: list[SelfTestItem]) -> dict[str, SelfTestItem]:
    assert [i.key for i in found] == list(ITEM_LABELS)
    return {i.key: i for i in found}


def cli_json(argv_prefix: list[str], ready: Ready, *, env: dict[str, str] | None = None) -> tuple[int, dict]:
    """``cafe-probe selftest --json`` run through ``argv_prefix`` (setpriv, unshare, a lab namespace)."""
    proc = subprocess.run([*argv_prefix, CAFE_PROBE, "selftest", "--hardware", str(ready.hardware_file), "--json",
                           "--home", str(ready.home.root)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is (proc.returncode == 0)
    return proc.returncode, {i["key"]: i for i in doc["items"]}


# -- all well ------------------------------------------------------------------------------------------------

def test_ready_probe_passes_every_item_but_its_unplugged_ports(ready, agent):
    before = {p: p.read_bytes() for p in (ready.tmp / "leds").rglob("*") if p.is_file()}
    got = items(run_selftest(ready.home, ready.hardware))
    # The host's interfaces are not this profile's eth0/off0 pair: interfaces are the lab test's business.
    for key in ITEM_LABELS:
        if key != "interfaces":
            assert got[key].ok, (key, got[key].reason)
    clock = got["clock"].detail
    assert clock["device_url"] == agent[0] and abs(clock["device_offset"]) < 1 and clock["tolerance"] == 2
    rules = load_ruleset()
    assert got["ruleset"].detail["sha256"] == rules.sha256 and rules.sha256 in got["ruleset"].reason
    assert got["ruleset"].detail["packs"] == {ready.pack_id: {"version": rules.version, "sha256": rules.sha256}}
    assert [p["status"] for p in got["packs"].detail["packs"]] == ["valid"]
    assert got["keys"].detail["key_mode"] == "0600" and got["keys"].detail["agent"]["url"] == agent[0]
    assert got["leds"].detail["leds"]["status"]["path"].endswith("fake-act")
    assert got["outbox"].detail["pending"] == 0
    # Read, never changed: the LEDs as they were, nothing left in the outbox.
    assert before == {p: p.read_bytes() for p in (ready.tmp / "leds").rglob("*") if p.is_file()}
    assert list((ready.home.outbox_path / "pending").iterdir()) == []


# -- keys ----------------------------------------------------------------------------------------------------

def test_key_mode_0644_fails_and_says_chmod(ready):
    ready.home.private_key_path.chmod(0o644)
    keys = items(run_selftest(ready.home, ready.hardware))["keys"]
    assert not keys.ok and keys.detail["key_mode"] == "0644"
    assert "权限为 0644，应为 0600" in keys.reason and f"chmod 600 {ready.home.private_key_path}" in keys.reason


def test_missing_key_fails(ready):
    ready.home.private_key_path.unlink()
    got = items(run_selftest(ready.home, ready.hardware))
    assert not got["keys"].ok and "缺少私钥" in got["keys"].reason and "no probe key" in got["keys"].reason
    # Without its key the probe cannot open its pack either.
    assert not got["packs"].ok and "refused" in got["packs"].reason


def test_key_of_another_owner_and_mismatched_identity_files(ready):
    nobody = pwd.getpwnam("nobody")
    os.chown(ready.home.private_key_path, nobody.pw_uid, nobody.pw_gid)
    keys = items(run_selftest(ready.home, ready.hardware))["keys"]
    assert not keys.ok and "owned by nobody, not by the user running the probe (root)" in keys.reason
    os.chown(ready.home.private_key_path, 0, 0)
    other = ProbeHome(ready.tmp / "other")
    other.keygen("probe-other")
    shutil.copy(other.public_key_path, ready.home.public_key_path)
    doc = json.loads(ready.home.identity_path.read_text())
    doc["key_id"] = json.loads(other.identity_path.read_text())["key_id"]
    ready.home.identity_path.write_text(json.dumps(doc))
    keys = items(run_selftest(ready.home, ready.hardware))["keys"]
    assert not keys.ok
    assert "probe.json records key id" in keys.reason and "probe.pub is not the private key's public half" in keys.reason


def test_no_department_pinned(ready):
    ready.home.departments_path.unlink()
    got = items(run_selftest(ready.home, ready.hardware))
    assert not got["keys"].ok and "no department key pinned" in got["keys"].reason
    assert not got["packs"].ok and f"pack {ready.pack_id} refused" in got["packs"].reason


def test_no_agent_pinned_fails_keys_and_the_clock_cannot_compare(ready):
    ready.home.agent_path.unlink()
    got = items(run_selftest(ready.home, ready.hardware,
                             clock=functools.partial(check_clock, synchronised=lambda: False)))
    assert not got["keys"].ok and "inspector device not pinned" in got["keys"].reason
    assert not got["clock"].ok and "no inspector device pinned" in got["clock"].reason


# -- packs and ruleset ---------------------------------------------------------------------------------------

def test_no_pack_staged_fails(ready):
    Staging(ready.home).remove(ready.pack_id)
    packs = items(run_selftest(ready.home, ready.hardware))["packs"]
    assert not packs.ok and "未暂存任务包" in packs.reason and "headless probe has nothing to run" in packs.reason


def test_expired_pack_fails(tmp_path, agent):
    start = datetime.now(timezone.utc) - timedelta(days=3)
    old = ready_probe(tmp_path, *agent, not_before=start, not_after=start + timedelta(days=1))
    packs = items(run_selftest(old.home, old.hardware))["packs"]
    assert not packs.ok and packs.detail["packs"][0]["status"] == "expired"
    assert f"pack {old.pack_id} expired at" in packs.reason and "no valid task pack" in packs.reason


def test_pack_yet_to_be_valid_passes_and_lists_its_start(tmp_path, agent):
    start = datetime.now(timezone.utc) + timedelta(days=1)
    early = ready_probe(tmp_path, *agent, not_before=start, not_after=start + timedelta(days=1))
    packs = items(run_selftest(early.home, early.hardware))["packs"]
    assert packs.ok and packs.detail["packs"][0]["status"] == "not_yet"
    assert f"{early.pack_id} valid from {start.astimezone(ZoneInfo('Asia/Shanghai')).isoformat(timespec='seconds')}" \
        in packs.reason


def test_pack_for_another_ruleset_is_named(ready, tmp_path, monkeypatch):
    # The probe's rules are updated after staging: the staged pack expects the old ones.
    rules = tmp_path / "rules"
    shutil.copytree(rules_directory(None), rules)
    with (rules / "ruleset.yaml").open("a", encoding="utf-8") as fh:
        fh.write("# local change\n")
    monkeypatch.setenv(RULES_ENV, str(rules))
    got = items(run_selftest(ready.home, ready.hardware))
    assert not got["ruleset"].ok
    assert f"pack {ready.pack_id} expects ruleset" in got["ruleset"].reason
    assert load_ruleset().sha256 in got["ruleset"].reason  # this probe's own, in full
    assert not got["packs"].ok and "differs in content" in got["packs"].reason


# -- outbox and disk -----------------------------------------------------------------------------------------

def test_full_outbox_and_too_little_disk(ready):
    box = Outbox(ready.home.outbox_path)
    for _ in range(MAX_PENDING):
        box.enqueue(str(uuid.uuid4()), b'{"payload": "x"}')
    hungry = load_hardware(str(hardware_yaml(ready.tmp / "hungry.yaml", ready.tmp / "leds",
                                             min_free_megabytes=1_000_000)))
    got = items(run_selftest(ready.home, hungry))
    assert not got["outbox"].ok and got["outbox"].detail["pending"] == MAX_PENDING
    assert f"outbox full: {MAX_PENDING} unsent reports" in got["outbox"].reason
    assert not got["disk"].ok and "not enough free disk" in got["disk"].reason
    assert got["disk"].detail["min_free_bytes"] == 1_000_000 * 1024 * 1024
    assert len(box.pending()) == MAX_PENDING  # nothing evicted


def test_outbox_blocked_by_a_file(ready):
    ready.home.outbox_path.mkdir()
    (ready.home.outbox_path / "pending").write_text("a file where the directory should be")
    outbox = items(run_selftest(ready.home, ready.hardware))["outbox"]
    assert not outbox.ok and "cannot create or open the outbox" in outbox.reason


def test_read_only_outbox_and_leds(ready):
    # Root writes through any mode bits, so a read-only bind mount makes the place unwritable; in a private
    # mount namespace, so it exists for this one process only.
    pending = ready.home.outbox_path / "pending"
    Outbox(ready.home.outbox_path)
    act = ready.tmp / "leds" / "fake-act"
    script = (f"mount --bind {pending} {pending} && mount -o remount,bind,ro {pending} && "
              f"mount --bind {act} {act} && mount -o remount,bind,ro {act} && exec \"$@\"")
    code, got = cli_json(["unshare", "--mount", "sh", "-c", script, "sh"], ready)
    assert code == 1
    assert not got["outbox"]["ok"] and "not writable" in got["outbox"]["reason"]
    assert "Read-only file system" in got["outbox"]["reason"]
    assert not got["leds"]["ok"] and "LED status not writable" in got["leds"]["reason"]
    assert "LED alert" not in got["leds"]["reason"]
    assert got["keys"]["ok"] and got["packs"]["ok"]
    assert pending.is_dir() and os.access(pending, os.W_OK)  # the mount went with the process


def test_missing_led_fails(ready):
    hw = load_hardware(str(hardware_yaml(ready.tmp / "noled.yaml", ready.tmp / "leds", alert="no-such-led")))
    leds = items(run_selftest(ready.home, hw))["leds"]
    assert not leds.ok and f"LED alert not present: {ready.tmp / 'leds' / 'no-such-led'}" in leds.reason


# -- clock ---------------------------------------------------------------------------------------------------

def test_clock_set_off_fails(ready):
    clock = items(run_selftest(ready.home, ready.hardware, now=lambda: time.time() + 120))["clock"]
    # Off by at most half the round trip (both clocks are this machine's), however slow the round trip was.
    assert not clock.ok and clock.detail["device_offset"] == pytest.approx(-120, abs=clock.detail["device_rtt"] / 2
                                                                           + 0.001)
    assert "超过容差 2 s" in clock.reason and "tolerance 2 s" in clock.reason


def test_unsynchronised_clock_without_the_device_fails(ready):
    clock = items(run_selftest(ready.home, ready.hardware, agent_url="http://127.0.0.1:9",
                               clock=functools.partial(check_clock, synchronised=lambda: False, timeout=0.5)))["clock"]
    assert not clock.ok and clock.detail["synchronised"] is False
    assert "时钟未同步且无法与检查设备比对" in clock.reason
    assert "clock not synchronised and the inspector device not reachable" in clock.reason


# -- raw socket, through the command -------------------------------------------------------------------------

def test_raw_socket_refused_without_cap_net_raw(ready):
    assert shutil.which("setpriv"), "util-linux setpriv (Debian 12) drops one capability for one process"
    code, got = cli_json([], ready)
    assert got["raw_socket"]["ok"]
    code, got = cli_json(["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw"], ready)
    assert code == 1
    reason = got["raw_socket"]["reason"]
    assert not got["raw_socket"]["ok"] and "需要 CAP_NET_RAW" in reason and "needs CAP_NET_RAW" in reason
    assert got["keys"]["ok"] and got["outbox"]["ok"]


def test_table_output_and_exit_code(ready):
    hw = hardware_yaml(ready.tmp / "nolink.yaml", ready.tmp / "leds", officer_link="nosuch9")
    proc = subprocess.run([CAFE_PROBE, "selftest", "--hardware", str(hw), "--home", str(ready.home.root)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 1, proc.stderr
    assert "no interface matches the officer link (nosuch9)" in proc.stdout
    for word in ("项目 / item", "结果 / result", "原因 / reason", "时钟 / clock", "通过 pass", "失败 FAIL"):
        assert word in proc.stdout
    bad = subprocess.run([CAFE_PROBE, "selftest", "--hardware", "no-such-board"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown hardware profile" in bad.stderr


# -- interfaces, in a lab café -------------------------------------------------------------------------------

def _answers_from_probe(lab, url: str) -> bool:
    """Whether GET URL/v1/time answers 200 from inside the probe's namespace (over the officer link)."""
    ask = f"import httpx, sys; sys.exit(httpx.get({url + '/v1/time'!r}, timeout=1, trust_env=False).status_code != 200)"
    try:
        return subprocess.run(lab.exec_argv([sys.executable, "-c", ask]), capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.lab
def test_lab_unplugged_cafe_port_fails_then_plugged_passes(tmp_path):
    with running("small", new_lab_id("s"), probe_plugged=False, officer_link=True) as lab:
        lab.set_officer_link(True)
        truth = lab.truth()["probe"]
        device_ip = truth["officer_link"]["device_address"]
        data = tmp_path / "agent" / "data"
        setup_agent(data)
        port = free_port()
        device = f"http://{device_ip}:{port}"
        # The inspector device in its own namespace, listening on its end of the officer link (served_agent's
        # command line says 127.0.0.1; here the address is the link's).
        serve_there = lambda argv: lab.device_exec_argv([device_ip if a == "127.0.0.1" else a for a in argv])  # noqa: E731
        with served_agent(data, tmp_path / "agent.log", port=port, wrap=serve_there,
                          ready=lambda _url: _answers_from_probe(lab, device)):
            ready = ready_probe(tmp_path / "probe", device, public_line(load_public_key(data / "agent.pub")))
            hw = hardware_yaml(tmp_path / "lab-hardware.yaml", tmp_path / "probe" / "leds",
                               cafe_port=truth["interface"], officer_link=truth["officer_link"]["interface"])
            ready.hardware_file = hw
            code, got = cli_json(lab.exec_argv([]), ready)
            assert code == 1
            assert [k for k, item in got.items() if not item["ok"]] == ["interfaces"], got
            ports = got["interfaces"]["detail"]
            assert ports["cafe_port"]["name"] == "eth0" and ports["cafe_port"]["carrier"] is False
            assert ports["officer_link"]["name"] == "off0" and ports["officer_link"]["carrier"] is True
            assert "网吧端口 eth0 无载波" in got["interfaces"]["reason"]
            assert "café port eth0: no carrier" in got["interfaces"]["reason"]
            assert "off0" not in got["interfaces"]["reason"]
            # The clock was measured against the pinned device, over the officer link.
            clock = got["clock"]["detail"]
            assert clock["device_url"] == device and abs(clock["device_offset"]) <= clock["device_rtt"] / 2 + 0.001

            lab.set_probe_plugged(True)
            deadline = time.monotonic() + 60  # only catches a hang: the carrier comes at once on a veth
            while True:
                code, got = cli_json(lab.exec_argv([]), ready)
                if code == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert code == 0, {k: item["reason"] for k, item in got.items() if not item["ok"]}
            assert got["interfaces"]["detail"]["cafe_port"]["carrier"] is True
