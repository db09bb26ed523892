"""The café port failing under the probe: a full transmit queue is paced and retried, a pulled cable or a port
that goes away ends the run as incomplete (kept, signed, queued), at whatever moment of whatever stage."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lab import netns as ns
from lab.build import Lab, running
from probe.home import ProbeHome
from probe.iface import CarrierWatch, inspect_interface
from probe.net import arp, netbios
from probe.net.link import LinkLost, RawLink
from probe.outbox import Outbox
from probe.profile import load_profile
from probe.report import REPORT_FILE, verify_report
from probe.run import STAGES, Progress, RunOptions, StageRunner, execute, prepare
from tests.conftest import new_lab_id
from tests.reportkit import queue_report

pytestmark = pytest.mark.lab

FRAME_TYPE = b"\x88\xb5"  # IEEE local experimental EtherType: nothing on the lab LAN acts on these frames


@pytest.fixture(scope="module")
def small() -> Iterator[Lab]:
    with running("small", new_lab_id("lk")) as lab:
        yield lab


@pytest.fixture(scope="module")
def logs() -> Iterator[Lab]:
    with running("logs", new_lab_id("lg")) as lab:
        yield lab


@contextmanager
def spare_port(lab: Lab) -> Iterator[str]:
    """A second port in the probe's namespace (a USB adapter), its far end in the same namespace."""
    ns.ip_batch(["link add usb0 type veth peer name usb0p", "link set usb0 up", "link set usb0p up"],
                netns=lab.probe_netns)
    try:
        yield "usb0"
    finally:
        ns.ip_batch(["link del usb0"], netns=lab.probe_netns, force=True)


def _frame(link: RawLink) -> bytes:
    return b"\xff" * 6 + link.mac + FRAME_TYPE + b"\0" * 46


def _send_until_lost(link: RawLink, limit: float = 30.0) -> LinkLost:
    deadline = time.monotonic() + limit  # only catches a hang: the port goes within a second
    frame = _frame(link)
    while time.monotonic() < deadline:
        try:
            link.send(frame)
        except LinkLost as exc:
            return exc
        time.sleep(0.001)
    raise AssertionError("sending never noticed the port was gone")


def test_a_port_set_down_under_a_send_is_lost_not_an_error(small):
    with spare_port(small) as port, ns.inside(small.probe_netns):
        link = RawLink(port)
        try:
            assert link.carrier() and link.send(_frame(link))
            threading.Timer(0.1, lambda: ns.ip_batch([f"link set {port} down"], netns=small.probe_netns)).start()
            lost = _send_until_lost(link)
            assert "ENETDOWN" in str(lost) and link.lost == str(lost) and not link.carrier()
        finally:
            link.close()


def test_a_port_that_vanishes_under_a_send_is_lost(small):
    with spare_port(small) as port, ns.inside(small.probe_netns):
        link = RawLink(port)
        try:
            threading.Timer(0.1, lambda: ns.ip_batch([f"link del {port}"], netns=small.probe_netns)).start()
            lost = _send_until_lost(link)
            assert "ENXIO" in str(lost) or "ENODEV" in str(lost) or "ENETDOWN" in str(lost), lost
            assert not link.carrier()
        finally:
            link.close()


def test_a_full_transmit_queue_with_carrier_is_paced_and_retried(small):
    """A slow qdisc refuses frames (ENOBUFS) while the cable is fine: the sweep and the names still get through."""
    truth = small.truth()
    profile = load_profile(truth["profile"])
    probe_ip = IPv4Address(truth["probe"]["address"])
    # 200 kbit/s and a queue of two frames: at 1,000 frames a second most sends are refused at first.
    ns.run_in(small.probe_netns, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "200kbit",
                                  "burst", "1600", "limit", "1600"])
    try:
        with ns.inside(small.probe_netns):
            link = RawLink("eth0")
            try:
                sweep = arp.sweep(link, profile.network.subnets, probe_ip)
                names = netbios.survey(link, [(h.address, h.mac) for h in sweep.hosts], probe_ip)
            finally:
                link.close()
    finally:
        ns.run_in(small.probe_netns, ["tc", "qdisc", "del", "dev", "eth0", "root"])
    assert link.send_retries > 0 and link.lost is None
    assert {str(h.address) for h in sweep.hosts} == {h["address"] for h in truth["live_hosts"]}
    named = {t["address"] for t in truth["terminals"] if t["power"] == "on" and t["netbios"]}
    assert {str(a.address) for a in names.answers} >= named


def test_a_stage_ends_the_run_when_the_cable_goes_although_no_send_failed(small):
    """Over a veth the kernel drops frames to a pulled cable silently: the carrier, read at once, still tells."""
    with spare_port(small) as port, ns.inside(small.probe_netns):
        link = RawLink(port)
        runner = StageRunner(None, Progress(), ZoneInfo("Asia/Shanghai"),
                             link_down=lambda: link.lost or (None if link.carrier() else "gone"))
        try:
            def collect() -> int:
                for i in range(200):
                    if i == 50:
                        ns.ip_batch([f"link set {port}p down"], netns=small.probe_netns)
                    link.send(_frame(link))
                    time.sleep(0.001)
                return 1

            assert runner.run("arp", lambda: 1) == 1
            assert runner.run("netbios", collect) is None
            assert runner.run("dhcp", lambda: 1) is None
        finally:
            link.close()
    assert runner.interrupted is not None and runner.interrupted.stage == "netbios"
    assert runner.interrupted.stages_done == ["arp"] and runner.done == ["arp"]


def _wait_usable(lab: Lab, iface: str) -> None:
    deadline = time.monotonic() + 30  # only catches a hang: carrier returns at once on a veth
    with ns.inside(lab.probe_netns):
        while not inspect_interface(iface).usable:
            assert time.monotonic() < deadline, f"{iface} never got its carrier back"
            time.sleep(0.05)


# The logs stage needs the café with log servers; every other stage runs in the small café.
CASES = [("small", s) for s in STAGES if s != "logs"] + [("logs", "logs")]
# Slow stages that precede a later target add nothing to what is tested: they run when they are the target.
SLOW = {"dhcp", "cameras", "forwarding", "services"}


@pytest.mark.parametrize("cafe,stage", CASES, ids=[s for _, s in CASES])
def test_cable_pulled_at_a_random_moment_of_a_stage_keeps_a_signed_incomplete_run(cafe, stage, request, tmp_path):
    lab: Lab = request.getfixturevalue(cafe)
    truth = lab.truth()
    iface = truth["probe"]["interface"]
    _wait_usable(lab, iface)
    home = ProbeHome(tmp_path / "home")
    home.keygen("probe-pull")
    earlier = queue_report(home)
    order = STAGES[:STAGES.index(stage)]
    skip = {s for s in SLOW if s in order}
    opts = RunOptions(profile=Path(truth["profile"]), iface=iface, out=tmp_path / "run", home=home.root,
                      dhcp="dhcp" not in skip, cameras="cameras" not in skip, forwarding="forwarding" not in skip,
                      services="services" not in skip)
    delay = random.uniform(0.0, 0.2)
    pulled: dict[str, object] = {}
    current: list[str] = []
    timers: list[threading.Timer] = []

    def pull() -> None:
        lab.set_probe_plugged(False)
        pulled["during"] = current[-1]

    def on_stage(name: str) -> None:
        current.append(name)
        if name == stage:
            timers.append(threading.Timer(delay, pull))
            timers[-1].start()

    try:
        with ns.inside(lab.probe_netns):
            prep = prepare(opts)
            watch = CarrierWatch(iface)
            try:
                obs, _ = execute(prep, opts, Progress(stage=on_stage), stop=watch.lost)
            finally:
                watch.close()
    finally:
        for timer in timers:
            timer.join()
        lab.set_probe_plugged(True)
    run = obs.run
    assert "during" in pulled, f"the run ended before the cable was pulled ({delay:.3f} s into {stage})"
    assert run.complete is False and run.interrupted is not None
    hit, stopped = pulled["during"], run.interrupted.stage
    # The stage the cable went during is the one lost; a pull landing just after that stage's own last check
    # leaves it done and ends the run at the next one.
    ran = [s for s in current if s != stopped]
    assert stopped == hit or (hit in run.interrupted.stages_done and stopped == current[-1]), (hit, stopped)
    assert run.interrupted.stages_done == ran and stopped not in run.interrupted.stages_done
    assert "lost" in run.interrupted.reason or "断开" in run.interrupted.reason
    # Signed, queued, verifiable, and nothing that was waiting in the outbox lost.
    ident = home.identity()
    payload = verify_report((opts.out / REPORT_FILE).read_bytes(), {ident.key_id: ident.public_key}).payload
    assert payload.complete is False and stopped in payload.incomplete_reason
    box = Outbox(home.outbox_path)
    assert {e.report_id for e in box.pending()} == {earlier, payload.report_id}
    assert (opts.out / "capture.pcap").stat().st_size > 24 and (opts.out / "observations.json").exists()
    assert run.link.sent > 0 and run.link.received > 0  # the link's own counts are in the evidence
    if stopped != "arp":
        assert obs.arp.hosts  # what the finished stages gathered is kept
