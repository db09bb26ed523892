"""The lab always removes what it built: after a failed build, and after a failing test body."""

from __future__ import annotations

import subprocess

import pytest

from lab.build import Lab, running
from lab.scenario import load_scenario
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab


def _namespaces(lab_id: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{lab_id}-")]


def test_failed_build_removes_everything(monkeypatch):
    lab = Lab(load_scenario("small"), new_lab_id("f"))

    def boom(self, live):
        assert _namespaces(self.id), "namespaces exist at this point"
        raise RuntimeError("terminal daemon exploded")

    monkeypatch.setattr(Lab, "_start_terminals", boom)
    with pytest.raises(RuntimeError, match="exploded"):
        lab.up()
    assert _namespaces(lab.id) == []
    assert not lab.state_dir.exists()


def test_running_removes_lab_when_the_body_fails():
    lab_id = new_lab_id("g")
    with pytest.raises(ZeroDivisionError):
        with running("small", lab_id) as lab:
            pids = [p["pid"] for p in lab._state["processes"]]
            assert pids
            1 / 0
    assert _namespaces(lab_id) == []
    for pid in pids:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
