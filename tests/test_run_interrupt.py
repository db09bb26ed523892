"""A run stopped between stages (the café link lost, a stop asked): what is kept, what is discarded, and how
the incomplete run is written, signed and queued. Unit level with real stages' stand-ins counting their calls,
real observations, rules, keys and outbox; one lab run stopped in its very first stage."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from lab.build import running
from probe.evaluate import evaluate
from probe.home import ProbeHome
from probe.iface import Interface
from probe.observations import ArpSweep, Interruption
from probe.outbox import Outbox
from probe.profile import parse_profile
from probe.report import REPORT_FILE, verify_report
from probe.rules import load_ruleset
from probe.run import STAGES, Prepared, Progress, RunOptions, StageRunner, finish_run, incomplete_reason
from tests.conftest import new_lab_id
from tests.reportkit import PROFILE, TZ, make_observations

LOST = "网吧网线已断开（无载波）/ café link lost its carrier"


class Stop:
    """A stop check that answers LOST from its ``fire_at``-th call on (1-based; None: never)."""

    def __init__(self, fire_at: int | None) -> None:
        self.fire_at, self.calls = fire_at, 0

    def __call__(self) -> str | None:
        self.calls += 1
        return LOST if self.fire_at is not None and self.calls >= self.fire_at else None


def _run_all(stop) -> tuple[StageRunner, dict[str, object], list[str], list[str]]:
    """Every stage through one runner, each returning its own name; what ran, what started (progress)."""
    started: list[str] = []
    ran: list[str] = []
    runner = StageRunner(stop, Progress(stage=started.append), TZ)

    def collect(name: str):
        def work() -> str:
            ran.append(name)
            return f"result of {name}"
        return work

    results = {name: runner.run(name, collect(name)) for name in STAGES}
    return runner, results, ran, started


def test_without_a_stop_every_stage_runs_and_keeps_its_result():
    for stop in (None, Stop(None), lambda: ""):  # "" is no reason: the run goes on
        runner, results, ran, started = _run_all(stop)
        assert runner.interrupted is None and runner.done == list(STAGES) == ran == started
        assert results == {name: f"result of {name}" for name in STAGES}


@pytest.mark.parametrize("k", range(len(STAGES)))
def test_link_lost_during_a_stage_discards_that_stage_and_runs_no_more(k):
    # Calls: before stage 0, after stage 0, before stage 1, after stage 1, …: "after stage k" is call 2k + 2.
    runner, results, ran, started = _run_all(Stop(2 * k + 2))
    name = STAGES[k]
    assert ran == started == list(STAGES[:k + 1])        # the stage in progress ran out its bounded time …
    assert results[name] is None                          # … and its partial result is discarded
    assert all(results[n] == f"result of {n}" for n in STAGES[:k])
    assert all(results[n] is None for n in STAGES[k + 1:])
    i = runner.interrupted
    assert i is not None and i.stage == name and i.stages_done == list(STAGES[:k]) == runner.done
    assert i.reason == LOST and i.at.utcoffset() is not None


@pytest.mark.parametrize("k", range(len(STAGES)))
def test_link_lost_between_stages_keeps_the_last_one_and_starts_no_more(k):
    # "Before stage k" is call 2k + 1: stage k never starts.
    runner, results, ran, started = _run_all(Stop(2 * k + 1))
    assert ran == started == list(STAGES[:k]) == runner.done
    assert all(results[n] == f"result of {n}" for n in STAGES[:k])
    assert all(results[n] is None for n in STAGES[k:])
    assert runner.interrupted is not None and runner.interrupted.stage == STAGES[k]


# ----------------------------------------------------------------------------------- the incomplete run written

@pytest.fixture
def prepared(tmp_path) -> tuple[Prepared, RunOptions]:
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-unit")
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text(PROFILE, encoding="utf-8")
    out = tmp_path / "run"
    out.mkdir()
    (out / "capture.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))  # what RawLink leaves: a header at least
    opts = RunOptions(profile=profile_path, iface="eth0", out=out, home=home.root, task_id="T-9",
                      inspectors=["350100123"], task_pack="0f0e0d0c-0000-4000-8000-000000000001")
    profile = parse_profile(PROFILE, tmp_path)
    prep = Prepared(profile=profile, profile_sha256="1" * 64, ruleset=load_ruleset(),
                    interface=Interface(name="eth0", index=2, mac="02:00:00:00:00:fe", admin_up=True, carrier=True,
                                        operstate="UP", addresses=()),
                    probe_address=IPv4Interface("198.18.10.250/24"), tz=TZ, identity=home.identity(),
                    outbox=Outbox(home.outbox_path))
    return prep, opts


def _interrupted(stage: str, done: list[str]) -> Interruption:
    return Interruption(at=datetime(2026, 11, 24, 10, 0, 30, tzinfo=TZ), stage=stage, reason=LOST, stages_done=done)


def test_an_interrupted_run_is_written_signed_and_queued_as_incomplete(prepared):
    prep, opts = prepared
    obs = make_observations()
    interruption = _interrupted("services", ["arp", "netbios", "dhcp", "foreign"])
    obs.run = obs.run.model_copy(update={"complete": False, "interrupted": interruption, "task_pack": opts.task_pack})
    findings = finish_run(obs, prep, opts)
    assert findings == evaluate(obs, prep.profile, prep.ruleset)  # judged on what was gathered, as always

    saved = json.loads((opts.out / "observations.json").read_text())
    assert saved["run"]["complete"] is False and saved["run"]["interrupted"]["stage"] == "services"
    assert json.loads((opts.out / "findings.json").read_text())["complete"] is False
    ident = prep.identity
    payload = verify_report((opts.out / REPORT_FILE).read_bytes(), {ident.key_id: ident.public_key}).payload
    assert payload.complete is False and payload.incomplete_reason == incomplete_reason(interruption)
    assert "services" in payload.incomplete_reason and LOST in payload.incomplete_reason
    assert payload.task_pack == opts.task_pack and payload.task.id == "T-9"
    assert {e.name for e in payload.evidence} == {"observations.json", "findings.json", "capture.pcap"}
    assert [e.report_id for e in prep.outbox.pending()] == [payload.report_id]  # queued like any report


def test_a_run_lost_in_its_sweep_knows_no_host_and_says_so(prepared):
    prep, opts = prepared
    obs = make_observations(hosts=[])
    empty = ArpSweep(subnets=prep.profile.network.subnets, targets=0, rate_pps=opts.rate, rounds=[], hosts=[],
                     seconds=0.0)
    obs = obs.model_copy(update={"arp": empty})
    obs.run = obs.run.model_copy(update={"complete": False, "interrupted": _interrupted("arp", [])})
    findings = {f.check_id: f for f in finish_run(obs, prep, opts)}
    # No host known: the terminal checks cannot judge, and the report says the run is incomplete.
    assert findings["TERMINAL-COUNT"].status.value == "inconclusive"
    assert findings["IP-MAP"].status.value == "inconclusive"
    ident = prep.identity
    payload = verify_report((opts.out / REPORT_FILE).read_bytes(), {ident.key_id: ident.public_key}).payload
    assert payload.complete is False and payload.incomplete_reason.startswith("运行在“arp”阶段中断")


def test_an_interrupted_run_claims_no_pass_and_keeps_its_fails(prepared):
    prep, opts = prepared
    obs = make_observations()
    complete = {f.check_id: f for f in evaluate(obs, prep.profile, prep.ruleset)}
    assert any(f.status.value == "pass" for f in complete.values())  # else the test proves nothing
    obs.run = obs.run.model_copy(update={"complete": False, "interrupted": _interrupted("cameras", list(STAGES[:6]))})
    cut = {f.check_id: f for f in evaluate(obs, prep.profile, prep.ruleset)}
    for check_id, before in complete.items():
        after = cut[check_id]
        if before.status.value == "pass":
            # What was not gathered may hold the failure: no pass from an interrupted run.
            assert after.status.value == "inconclusive", check_id
            assert after.evidence["before_interruption"]["status"] == "pass"
            assert "cameras" in after.summary_en and "cameras" in after.summary_zh
        else:
            assert after.status == before.status, check_id  # a fail seen is a fail


def test_a_complete_run_says_nothing_of_an_interruption(prepared):
    prep, opts = prepared
    finish_run(make_observations(), prep, opts)
    ident = prep.identity
    payload = verify_report((opts.out / REPORT_FILE).read_bytes(), {ident.key_id: ident.public_key}).payload
    assert payload.complete is True and payload.incomplete_reason == "" and incomplete_reason(None) == ""


# ------------------------------------------------------------------------------------------ in the lab, for real

SCRIPT = """
import json, sys
from pathlib import Path
from probe.run import RunOptions, execute, prepare
opts = RunOptions(profile=Path(sys.argv[1]), iface="eth0", out=Path(sys.argv[2]), home=Path(sys.argv[3]))
prep = prepare(opts)
calls = []
def stop():
    calls.append(1)
    return "测试停止 / stop asked by the test" if len(calls) >= 2 else None  # after the sweep's own end
obs, findings = execute(prep, opts, stop=stop)
print(json.dumps({"complete": obs.run.complete, "stage": obs.run.interrupted.stage}))
"""


@pytest.mark.lab
def test_execute_stopped_in_its_sweep_writes_an_incomplete_run(tmp_path):
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-lab")
    with running("small", new_lab_id("ri")) as lab:
        out = tmp_path / "run"
        proc = subprocess.run(lab.exec_argv([sys.executable, "-c", SCRIPT, lab.truth()["profile"], str(out),
                                             str(home.root)]),
                              capture_output=True, text=True, timeout=120, cwd=str(Path(__file__).parent.parent))
        assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"complete": False, "stage": "arp"}
    obs = json.loads((out / "observations.json").read_text())
    assert obs["arp"]["hosts"] == [] and obs["netbios"]["queried"] == 0 and obs["foreign_arp"] is None
    assert obs["dhcp"] is None and obs["services"] is None and obs["run"]["interrupted"]["stages_done"] == []
    # The capture keeps the frames of the sweep whose result was discarded.
    from scapy.utils import RawPcapReader

    assert sum(1 for _ in RawPcapReader(str(out / "capture.pcap"))) > 10
    ident = home.identity()
    payload = verify_report((out / REPORT_FILE).read_bytes(), {ident.key_id: ident.public_key}).payload
    assert payload.complete is False and [e.report_id for e in Outbox(home.outbox_path).pending()] == [
        payload.report_id]
