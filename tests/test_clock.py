"""The clock check: the kernel's own verdict (adjtimex), the agent's GET /v1/time, and the offset rule."""

from __future__ import annotations

import ctypes
import time
from datetime import datetime

import pytest

from probe.clock import DeviceTimeError, _Timex, check_clock, device_offset, kernel_synchronised
from tests.agentkit import make_agent, served_agent, setup_agent

# The device's reading is sent in microseconds; the two clock reads around a request are a few µs apart.
EPSILON = 0.001


@pytest.fixture(scope="module")
def agent_url(tmp_path_factory: pytest.TempPathFactory):
    """A real ``cafe-agent serve`` on 127.0.0.1 for the module."""
    root = tmp_path_factory.mktemp("clock-agent")
    setup_agent(root / "data")
    with served_agent(root / "data", root / "agent.log") as url:
        yield url


def test_timex_layout_matches_the_kernel():
    # Read once through our struct: the fields after ``status`` land where the
    # kernel wrote them only if the layout is right (time ≈ now, tick = 1e6/HZ).
    tx = _Timex()
    state = ctypes.CDLL("libc.so.6").adjtimex(ctypes.byref(tx))
    assert 0 <= state <= 5
    assert abs(tx.time.tv_sec - time.time()) < 60  # a wrong layout reads another field, nowhere near now
    assert 1_000_000 // 1000 <= tx.tick <= 1_000_000 // 100 * 1.1
    assert tx.tolerance == 500 << 16  # MAXFREQ_SCALED: 500 ppm in the kernel's 16.16 fixed point
    assert tx.modes == 0  # read only: we asked for nothing to change
    assert kernel_synchronised() is (state != 5 and not tx.status & 0x40)


def test_time_endpoint_no_login_no_store(tmp_path):
    agent = make_agent(tmp_path)
    before = time.time()
    answer = agent.client.get("/v1/time")
    after = time.time()
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    doc = answer.json()
    assert before <= doc["unix"] <= after
    at = datetime.fromisoformat(doc["now"])
    assert at.utcoffset().total_seconds() == 8 * 3600  # Asia/Shanghai, the agent's default zone
    assert "." in doc["now"] and abs(at.timestamp() - doc["unix"]) < 1e-6  # one reading, microseconds


def test_device_offset_against_a_served_agent(agent_url, monkeypatch):
    # A proxy in the environment must not be used (trust_env=False): the officer link is direct.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    offset, rtt = device_offset(agent_url)
    # Both clocks are this machine's: the device read it within the round trip, so the midpoint estimate
    # is off by at most half of it, however slow the round trip was.
    assert rtt > 0 and abs(offset) <= rtt / 2 + EPSILON
    ahead, rtt = device_offset(agent_url, now=lambda: time.time() + 120)
    assert ahead == pytest.approx(-120, abs=rtt / 2 + EPSILON)


def test_device_offset_unreachable_and_wrong_answer(agent_url):
    with pytest.raises(DeviceTimeError, match="ConnectError"):
        device_offset("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(DeviceTimeError, match="404"):
        device_offset(agent_url + "/nothing-here")


def test_clock_set_off_fails_with_the_offset(agent_url):
    check = check_clock(agent_url, 2.0, now=lambda: time.time() + 120, synchronised=lambda: True)
    assert not check.ok and check.synchronised is True
    assert check.device_rtt > 0 and check.device_offset == pytest.approx(-120, abs=check.device_rtt / 2 + EPSILON)
    assert "超过容差 2 s" in check.reason and "-120." in check.reason and "tolerance 2 s" in check.reason
    assert check.checked_at.utcoffset().total_seconds() == 8 * 3600


def test_within_tolerance_passes_even_unsynchronised(agent_url):
    check = check_clock(agent_url, 2.0, synchronised=lambda: False)
    assert check.ok and check.synchronised is False and abs(check.device_offset) <= check.device_rtt / 2 + EPSILON
    assert "内核时钟未同步" in check.reason and "reference" in check.reason


@pytest.mark.parametrize("kernel, ok", [(True, True), (False, False), (None, False)])
def test_no_device_trusts_only_a_synchronised_kernel(kernel, ok):
    check = check_clock("http://127.0.0.1:9", 2.0, synchronised=lambda: kernel, timeout=0.5)
    assert check.ok is ok and check.device_offset is None and check.device_url == "http://127.0.0.1:9"
    if not ok:
        assert "时钟未同步且无法与检查设备比对" in check.reason
        assert "clock not synchronised and the inspector device not reachable" in check.reason
    none_pinned = check_clock(None, 2.0, synchronised=lambda: kernel)
    assert none_pinned.ok is ok and "no inspector device pinned" in none_pinned.reason


def test_real_kernel_verdict_is_recorded():
    check = check_clock(None, 2.0)
    assert check.synchronised is kernel_synchronised()
    assert check.ok is bool(check.synchronised)
