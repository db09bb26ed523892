"""A headless probe in the lab for tests and benches: staged venues, a hardware profile, fake LEDs, the journal.

``stage_venues`` stages one real task pack (tests.packkit) with the given venue
profiles on a fresh probe home; ``venue_profiles`` writes the three venues the
autorun tests stage (the lab café ``messy`` with its gateway's MAC, a twin on
the same LAN plan behind another gateway MAC, and a venue on another subnet);
``lab_hardware`` writes a hardware profile naming the lab's ``eth0`` and
``off0`` with a fake LED class tree; ``start_autorun`` starts ``cafe-probe
autorun --once`` in the lab's probe namespace; ``Journal`` follows
``home/autorun.log``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.scenario import load_scenario
from probe.autorun import JOURNAL_FILE, read_journal
from probe.home import ProbeHome
from probe.keys import load_public_key, public_line
from probe.staging import Staging
from tests.agentkit import setup_agent
from tests.packkit import DEPARTMENT_NAME, lab_profile, make_pack, new_agent_key_line

__all__ = ["DEVICE", "PORT", "BADGES", "Journal", "LabProbe", "add_pack", "lab_hardware", "led_state", "messy_gateway_mac",
           "patterns", "stage_venues", "start_autorun", "venue_profiles", "with_gateway_mac"]

DEVICE = "198.19.254.1"    # the inspector device at the far end of the lab's officer link
PORT = 8765                # its own namespace: nothing else listens there
BADGES = ["350100123", "350100456"]
TWIN_MAC = "02:00:5e:0a:00:fe"


def with_gateway_mac(profile: Path, mac: str, dest: Path, **changes: Any) -> Path:
    """A copy of ``profile`` in ``dest`` with its first gateway's MAC registered and ``changes`` applied
    (``venue_id``, ``subnet``, ``gateway``: another venue on another plan)."""
    doc = yaml.safe_load(profile.read_text(encoding="utf-8"))
    net = doc["network"]
    if "venue_id" in changes:
        doc["venue"]["id"] = changes["venue_id"]
        doc["venue"]["name"] = changes.get("name", changes["venue_id"])
        doc["venue"].pop("credit_code", None)
    if "subnet" in changes:
        net["subnets"] = [changes["subnet"]]
        net["gateways"] = [changes["gateway"]]
        net["dhcp_servers"] = [changes["gateway"]]
        doc["terminals"]["first_address"] = changes["first_address"]
    net["gateway_macs"] = {str(net["gateways"][0]): mac}
    dest.mkdir(parents=True, exist_ok=True)
    if (profile.parent / "secrets").is_dir() and not (dest / "secrets").exists():
        shutil.copytree(profile.parent / "secrets", dest / "secrets")  # copy2: the files stay 0600
    path = dest / "profile.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def venue_profiles(tmp: Path, messy_gateway_mac: str) -> list[Path]:
    """The three staged venues: messy (its gateway MAC registered), its twin behind another gateway MAC,
    and a venue on 198.18.30.0/24."""
    messy, _ = lab_profile(tmp / "src", "messy")
    return [with_gateway_mac(messy, messy_gateway_mac, tmp / "messy"),
            with_gateway_mac(messy, TWIN_MAC, tmp / "twin", venue_id="LAB-TWIN-0250", name="实验网咖（孪生）"),
            with_gateway_mac(messy, "02:00:5e:1e:00:01", tmp / "other", venue_id="LAB-OTHER-0100",
                             name="实验网咖（别处）", subnet="198.18.30.0/24", gateway="198.18.30.1",
                             first_address="198.18.30.1")]


def messy_gateway_mac() -> str:
    """The lab café messy's router MAC (what its lab.truth() reports), without building it."""
    return load_scenario("messy").router_mac()


@dataclass
class LabProbe:
    """A probe home with a staged pack, and what a test checks it against."""

    home: ProbeHome
    probe_id: str
    pack_id: str
    agent_url: str
    agent_line: str


def stage_venues(tmp: Path, profiles: Sequence[Path], agent_data: Path | None, *,
                 task_id: str = "TASK-2026-0009", probe_id: str = "lab-probe") -> LabProbe:
    """A fresh probe home under ``tmp`` with one staged pack of ``profiles``.

    With ``agent_data``, the pack names a new agent made there (to be served at
    DEVICE:PORT) that has the probe enrolled; without, an agent key of no
    device. The pack is signed by a department key the probe has pinned.
    """
    home = ProbeHome(tmp / "probe-home")
    home.keygen(probe_id)
    if agent_data is not None:
        setup_agent(agent_data, probe_pub=home.public_key_path, probe_id=probe_id)
        agent_line = public_line(load_public_key(agent_data / "agent.pub"))
    else:
        agent_line = new_agent_key_line()
    probe = LabProbe(home=home, probe_id=probe_id, pack_id="", agent_url=f"http://{DEVICE}:{PORT}",
                     agent_line=agent_line)
    probe.pack_id = add_pack(tmp / "pack", probe, profiles, task_id=task_id)
    return probe


def add_pack(tmp: Path, probe: LabProbe, profiles: Sequence[Path], *, task_id: str = "TASK-2026-0009") -> str:
    """Stage one more pack of ``profiles`` on the probe (a new department key, pinned); its pack id."""
    envelope, _ = make_pack(tmp, probe.home, [(p, BADGES) for p in profiles], probe.agent_url, probe.agent_line,
                            task_id=task_id)
    probe.home.pin_department((tmp / "department.pub").read_text(), DEPARTMENT_NAME)
    return Staging(probe.home).stage(envelope).payload.pack_id


def lab_hardware(tmp: Path) -> tuple[Path, Path]:
    """A hardware profile for the lab's probe namespace (café port eth0, officer link off0) and a fake LED
    class tree (``status`` and ``alert``, each with brightness, max_brightness, trigger); returns both paths."""
    leds = tmp / "leds"
    for name in ("status", "alert"):
        (leds / name).mkdir(parents=True, exist_ok=True)
        (leds / name / "brightness").write_text("0\n")
        (leds / name / "max_brightness").write_text("255\n")
        (leds / name / "trigger").write_text("none [mmc0] timer\n")
    profile = tmp / "hardware.yaml"
    profile.write_text(yaml.safe_dump({
        "name": "lab", "description": {"zh": "实验环境探针", "en": "lab probe"},
        "cafe_port": {"name": "eth0"}, "officer_link": {"name": "off0", "kind": "usb-ethernet"},
        "leds": {"status": ["status"], "alert": ["alert"]}, "leds_root": str(leds),
        "capture": {"user": "root", "capabilities": ["CAP_NET_RAW", "CAP_NET_ADMIN"]},
        "clock_tolerance_seconds": 5, "min_free_megabytes": 10}, allow_unicode=True), encoding="utf-8")
    return profile, leds


def led_state(leds: Path) -> dict[str, bool]:
    """Which fake LEDs are lit now."""
    return {p.name: (p / "brightness").read_text().strip() not in ("", "0") for p in sorted(leds.iterdir())}


def start_autorun(lab: Any, hardware: Path, home: ProbeHome, log: Path, *, once: bool = True,
                  wait_timeout: float = 240) -> subprocess.Popen:
    """``cafe-probe autorun [--once]`` in the lab's probe namespace; its stdout and stderr go to ``log``.

    ``ip netns exec`` execs the command, so the process's PID is the autorun's own (signals reach it)."""
    argv = lab.exec_argv(["cafe-probe", "autorun", *(["--once", "--wait-timeout", str(wait_timeout)] if once else []),
                          "--hardware", str(hardware), "--home", str(home.root)])
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class Journal:
    """Follows a probe home's autorun.log."""

    def __init__(self, home: ProbeHome, proc: subprocess.Popen | None = None) -> None:
        self.path = home.root / JOURNAL_FILE
        self.proc = proc

    def lines(self) -> list[dict[str, Any]]:
        return read_journal(self.path) if self.path.exists() else []

    def wait(self, event: str, timeout: float = 120, where: Callable[[dict[str, Any]], bool] = lambda line: True,
             ) -> dict[str, Any]:
        """The first line of ``event`` (matching ``where``), waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if line["event"] == event and where(line):
                    return line
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"autorun exited ({self.proc.returncode}) before {event!r}: {self.lines()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event!r} within {timeout} s: {self.lines()[-5:]}")
            time.sleep(0.1)


def patterns(lines: list[dict[str, Any]]) -> list[str]:
    """The LED patterns the journal shows, in order, each change once."""
    seen: list[str] = []
    for line in lines:
        if not seen or seen[-1] != line["led"]:
            seen.append(line["led"])
    return seen
