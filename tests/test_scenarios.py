"""Shipped scenarios: valid, their profiles load, and their truth is what the issue asks."""

from __future__ import annotations

import pytest

from lab.scenario import LAB_SECRETS, ScenarioError, load_scenario, scenario_names, stage_profile
from probe.profile import load_profile


def test_shipped_scenarios():
    assert {"small", "messy", "big", "rogue", "uplinks"} <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_profile_matches_the_numbering(name, tmp_path):
    sc = load_scenario(name)
    staged, _ = stage_profile(sc, tmp_path)
    profile = load_profile(staged)
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


def test_staged_secrets_are_private_fresh_and_named_by_the_profiles(tmp_path):
    sc = load_scenario("uplinks")
    staged, values = stage_profile(sc, tmp_path / "a")
    _, again = stage_profile(sc, tmp_path / "b")
    assert set(values) == set(LAB_SECRETS) and all(values[k] != again[k] for k in values)
    for name in LAB_SECRETS:
        path = tmp_path / "a" / "secrets" / name
        assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == values[name]
    v3 = load_profile(staged).servers.snmp[0].v3
    assert v3 is not None and v3.auth_key_file == tmp_path / "a" / "secrets" / "snmp-v3.auth"


def test_extra_devices_are_checked(tmp_path):
    base = (load_scenario("rogue").source.read_text())
    for bad, message in [
        (base.replace("- {address: 198.18.20.99, isp: second}", "- {address: 198.18.21.99, isp: second}"),
         "routers\\[0\\].address .* outside lan.subnet"),
        (base.replace("{address: 192.0.2.1/24}", "{address: 198.18.20.5/24}"), "lab's ranges|inside lan.subnet"),
        (base.replace("chatter_to: 192.0.2.200", "chatter_to: 192.0.3.200"), "outside 192.0.2.0/24"),
        (base.replace("routers:\n  - {address: 198.18.20.99, isp: second}",
                      "routers:\n  - {address: 198.18.20.101, isp: second}"), None),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(bad)
        if message is None:  # loads, but the router sits on machine 1's address
            with pytest.raises(ScenarioError, match="already used"):
                load_scenario(path).build_terminals()
        else:
            with pytest.raises(ScenarioError, match=message):
                load_scenario(path)
