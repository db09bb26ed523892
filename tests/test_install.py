"""The probe install into a scratch root (files, modes, the unit's ExecStart, the rule naming only the
profile's LEDs, a second run changing nothing), the unit checked by systemd-analyze, and setup.sh /
Dockerfile: one install script, arguments refused before anything is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardware.install import HARDWARE_PATH, NM_PATH, RULE_PATH, STATE_PATH, UNIT_PATH, InstallError, install
from hardware.profiles import load_hardware
from probe.cli import app

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)  # the venv running the tests: its bin/cafe-probe exists, as systemd-analyze wants
runner = CliRunner()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def _unit_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def _rule_leds(text: str) -> list[str]:
    return re.findall(r'KERNEL=="([^"]+)"', text)


def test_install_lays_down_unit_profile_rule_and_state_dir(tmp_path: Path) -> None:
    steps = install("pi4", root=tmp_path, venv=VENV)
    assert {s.target for s in steps if s.action == "wrote"} == {"/etc/cafe-probe/hardware.yaml",
                                                               "/etc/systemd/system/cafe-probe-autorun.service",
                                                               "/etc/udev/rules.d/90-cafe-probe-leds.rules",
                                                               "/etc/NetworkManager/conf.d/90-cafe-probe.conf"}
    # Never the machine's user database or services with --root.
    assert {s.target for s in steps if s.action == "skipped"} >= {"useradd cafe-probe", "systemctl, udevadm"}

    unit = (tmp_path / UNIT_PATH).read_text()
    values = _unit_values(unit)
    assert values["ExecStart"] == (f"{VENV}/bin/cafe-probe autorun --hardware /etc/cafe-probe/hardware.yaml "
                                   "--home ${STATE_DIRECTORY}")
    assert values["User"] == values["Group"] == "cafe-probe"
    assert values["AmbientCapabilities"] == values["CapabilityBoundingSet"] == "CAP_NET_RAW CAP_NET_ADMIN"
    for key, value in {"NoNewPrivileges": "yes", "StateDirectory": "cafe-probe", "StateDirectoryMode": "0700",
                       "RuntimeDirectory": "cafe-probe", "RuntimeDirectoryMode": "0700", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "Restart": "on-failure",
                       "WantedBy": "multi-user.target"}.items():
        assert values[key] == value, key
    assert "@" not in unit.replace("cafe-probe@", "")  # every placeholder filled
    assert "#@" not in unit

    assert load_hardware(tmp_path / HARDWARE_PATH).name == "pi4"
    rule = (tmp_path / RULE_PATH).read_text()
    assert _rule_leds(rule) == ["ACT", "led0", "PWR", "led1"]
    for line in rule.splitlines():
        if line.startswith("ACTION"):
            assert 'SUBSYSTEM=="leds"' in line
            assert 'RUN+="/bin/chgrp cafe-probe /sys%p/brightness /sys%p/trigger"' in line
            assert 'RUN+="/bin/chmod g+w /sys%p/brightness /sys%p/trigger"' in line
    # The café port is never given to NetworkManager's DHCP client: no lease from the café.
    assert (tmp_path / NM_PATH).read_text().splitlines()[-2:] == [
        "[keyfile]", "unmanaged-devices=interface-name:eth0;interface-name:end0"]
    for rel in (UNIT_PATH, RULE_PATH, HARDWARE_PATH, NM_PATH):
        assert _mode(tmp_path / rel) == 0o644, rel
    assert _mode(tmp_path / STATE_PATH) == 0o700

    # A second run: nothing rewritten, not even a timestamp.
    before = {rel: (tmp_path / rel).stat().st_mtime_ns for rel in (UNIT_PATH, RULE_PATH, HARDWARE_PATH)}
    again = install("pi4", root=tmp_path, venv=VENV)
    assert not [s for s in again if s.action in ("wrote", "created")], [s.line() for s in again]
    assert {rel: (tmp_path / rel).stat().st_mtime_ns for rel in before} == before


def test_rule_follows_the_effective_profile_and_overrides_survive(tmp_path: Path) -> None:
    install("pi5", root=tmp_path, venv=VENV)
    hw = tmp_path / HARDWARE_PATH
    hw.write_text(hw.read_text() + "leds: {status: [ACT], alert: []}\nofficer_link: {name: eth1, kind: usb-ethernet}\n")
    steps = install("pi5", root=tmp_path, venv=VENV)
    assert "leds: {status: [ACT]" in hw.read_text()  # the technician's overrides are kept
    assert _rule_leds((tmp_path / RULE_PATH).read_text()) == ["ACT"]  # and the rule follows them
    assert [s.target for s in steps if s.action == "wrote"] == ["/etc/udev/rules.d/90-cafe-probe-leds.rules"]

    install("laptop", root=tmp_path, venv=VENV)  # another board: the old choice is moved aside, not lost
    assert "leds: {status: [ACT]" in (hw.parent / "hardware.yaml.old").read_text()
    assert load_hardware(hw).name == "laptop"
    rule = (tmp_path / RULE_PATH).read_text()
    assert _rule_leds(rule) == [] and "names no LED" in rule

    (tmp_path / HARDWARE_PATH).write_text("profile: laptop\ncafe_prot: {name: eth0}\n")
    with pytest.raises(InstallError, match="cafe_prot: 未知的键 / unknown key"):
        install("laptop", root=tmp_path, venv=VENV)


def test_install_command_and_its_refusals(tmp_path: Path) -> None:
    done = runner.invoke(app, ["install", "--hardware", "pi4", "--root", str(tmp_path), "--venv", str(VENV)])
    assert done.exit_code == 0, done.output
    assert "写入 wrote" in done.output and "/etc/systemd/system/cafe-probe-autorun.service" in done.output
    again = runner.invoke(app, ["install", "--hardware", "pi4", "--root", str(tmp_path), "--venv", str(VENV)])
    assert again.exit_code == 0 and "写入 wrote" not in again.output and "未变 unchanged" in again.output

    wrong = runner.invoke(app, ["install", "--hardware", "pi3", "--root", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "unknown hardware 'pi3' (one of pi4, pi5, laptop)" in wrong.output
    assert not (tmp_path / "x").exists()


def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    install("pi5", root=tmp_path, venv=VENV)
    unit = tmp_path / UNIT_PATH
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]
    assert done.returncode == 0 and complaints == [], done.stdout + done.stderr

    # The check can fail: the same unit with a misspelt key and a binary that is not there.
    broken = tmp_path / "broken" / unit.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
                      .replace(f"{VENV}/bin/cafe-probe", f"{VENV}/bin/no-such-cafe-probe"))
    bad = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "NoNewPrivilege" in bad.stdout + bad.stderr


def test_dockerfile_installs_through_setup_sh() -> None:
    runs = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("RUN ")]
    assert runs and all("bash setup.sh install" in line for line in runs), runs


def test_setup_sh_refuses_bad_arguments_before_installing_anything() -> None:
    for args, expected in [(["probe"], "usage: bash setup.sh probe HARDWARE (one of: laptop pi4 pi5)"),
                           (["probe", "pi3"], "usage: bash setup.sh probe HARDWARE"),
                           (["probe", "../../etc/passwd"], "usage: bash setup.sh probe HARDWARE"),
                           (["deploy"], "unknown action 'deploy'")]:
        # The timeout only catches a hang: the empty stdout is what shows nothing was installed.
        done = subprocess.run(["bash", str(REPO / "setup.sh"), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert done.stdout == ""  # no "== apt-get …", no "== pip …": nothing was installed
    script = (REPO / "setup.sh").read_text()
    assert 'cafe-probe install --hardware "$hw"' in script
