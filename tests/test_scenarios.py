"""Shipped scenarios: valid, their profiles load, and their truth is what the issue asks."""

from __future__ import annotations

import pytest

from lab.scenario import ScenarioError, load_scenario, scenario_names
from probe.profile import load_profile


def test_shipped_scenarios():
    assert {"small", "messy", "big"} <= set(scenario_names())


@pytest.mark.parametrize("name", ["small", "messy", "big"])
def test_scenario_profile_matches_the_numbering(name):
    sc = load_scenario(name)
    profile = load_profile(sc.profile_path)
    for t in sc.build_terminals():
        assert profile.expected_address(t.number) == t.expected_address
        if t.netbios and t.name.startswith(sc.terminals.name_format.split("{")[0]):
            assert profile.machine_number(t.name) == t.number


def test_messy_and_big_shapes():
    small = load_scenario("small").build_terminals()
    assert len(small) == 30 and not any(t.mismatch for t in small)
    messy = load_scenario("messy").build_terminals()
    assert len(messy) == 250 and load_scenario("messy").lan.subnet.prefixlen == 24
    assert sum(t.mismatch for t in messy if t.power == "on") >= 3
    assert any(not t.netbios for t in messy) and any(t.power == "off" for t in messy)
    big = load_scenario("big")
    assert len(big.build_terminals()) == 1000 and big.lan.subnet.prefixlen == 22


def test_bad_scenarios_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprofile: p.yaml\nlan: {subnet: 10.0.0.0/24, router: 10.0.0.1, probe: 10.0.0.2, "
                   "dhcp_range: [10.0.0.10, 10.0.0.20]}\nterminals: {count: 1, first_address: 10.0.0.5}\n")
    with pytest.raises(ScenarioError, match="lab's ranges"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("nonexistent")
