"""IP-MAP and TERMINAL-COUNT as pure functions, on observations built by hand."""

from __future__ import annotations

import pytest

from probe.checks import CHECKS, CheckContext
from probe.evaluate import evaluate
from probe.findings import Status
from probe.observations import Observations
from probe.profile import parse_profile
from probe.rules import load_ruleset
from tests.reportkit import Host, make_observations

PROFILE = """
venue: {id: T-1, name: 测试网吧, licensed_terminals: 4}
network: {subnets: [198.18.40.0/22], gateways: [198.18.43.254], dhcp_servers: [198.18.43.254]}
terminals: {hostname_pattern: '^pc(?P<number>\\d+)$', first_address: 198.18.40.21,
            mac_table: {'02:00:00:00:00:99': 3}}
"""


def _obs(hosts: list[Host], dhcp: list[tuple[str, str]] = ()) -> Observations:
    """Observations on PROFILE's /22. hosts: (address, mac, NetBIOS name or None); dhcp: (mac, hostname)."""
    return make_observations(hosts=hosts, subnet="198.18.40.0/22", probe_address="198.18.43.253", dhcp=dhcp)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return parse_profile(PROFILE, tmp_path_factory.mktemp("p"))


def _run(check_id, obs, profile, **overrides):
    """Run one check with the shipped ruleset's thresholds, some overridden."""
    thresholds = {**load_ruleset().checks[check_id].thresholds, **overrides}
    return CHECKS[check_id](CheckContext(observations=obs, profile=profile, thresholds=thresholds))


def test_ip_map_offset_numbering_across_octets_and_sources(profile):
    obs = _obs([
        ("198.18.43.254", "02:00:00:00:00:01", None),     # gateway: not a terminal
        ("198.18.40.21", "02:00:00:00:00:02", "PC1"),     # number 1, upper-case NetBIOS name
        ("198.18.40.23", "02:00:00:00:00:99", None),      # number 3 from the MAC table
        ("198.18.41.20", "02:00:00:00:00:03", None),      # 256 from DHCP name: expected 198.18.41.20
        ("198.18.40.30", "02:00:00:00:00:04", "pc2"),     # number 2 belongs at .22: mismatch
    ], dhcp=[("02:00:00:00:00:03", "pc256")])
    v = _run("IP-MAP", obs, profile, sample_size=2, min_identified_share=0.5)
    assert v.status is Status.FAIL and v.reason == "mismatches"
    assert v.evidence["mismatches"] == [{"number": 2, "address": "198.18.40.30", "expected_address": "198.18.40.22",
                                         "mac": "02:00:00:00:00:04", "name": "pc2", "number_from": "name"}]
    assert v.evidence["checked"] == 4 and v.evidence["unidentified"] == []
    assert len(v.evidence["sample"]) == 2 and v.evidence["sample_seed"] == 7


def test_ip_map_never_passes_undecided(profile):
    nobody = _run("IP-MAP", _obs([("198.18.43.254", "02:00:00:00:00:01", None)]), profile)
    assert nobody.status is Status.INCONCLUSIVE and nobody.reason == "no_terminals"
    nameless = _run("IP-MAP", _obs([("198.18.40.40", "02:00:00:00:00:05", None)]), profile)
    assert nameless.status is Status.INCONCLUSIVE and nameless.reason == "none_identified"
    few = _run("IP-MAP", _obs([("198.18.40.21", "02:00:00:00:00:02", "PC1")]
                              + [(f"198.18.40.{50 + i}", f"02:00:00:00:01:{i:02x}", "KTV") for i in range(3)]),
               profile, min_identified_share=0.5)
    assert few.status is Status.INCONCLUSIVE and few.reason == "too_few_identified"


def test_ip_map_sample_is_reproducible(profile):
    obs = _obs([(f"198.18.40.{20 + n}", f"02:00:00:00:02:{n:02x}", f"PC{n}") for n in range(1, 30)])
    a = _run("IP-MAP", obs, profile, sample_size=3)
    b = _run("IP-MAP", obs, profile, sample_size=3)
    assert a.status is Status.PASS and a.evidence["sample"] == b.evidence["sample"]
    assert len(a.evidence["sample"]) == 3


def test_terminal_count(profile):
    named = [(f"198.18.40.{20 + n}", f"02:00:00:00:03:{n:02x}", f"PC{n}") for n in range(1, 6)]
    over = _run("TERMINAL-COUNT", _obs(named), profile)
    assert over.status is Status.FAIL and over.evidence["seen"] == 5 and over.evidence["licensed"] == 4
    unclear = _run("TERMINAL-COUNT", _obs(named[:3] + [("198.18.40.99", "02:00:00:00:04:01", None),
                                                       ("198.18.40.98", "02:00:00:00:04:02", None)]), profile)
    assert unclear.status is Status.INCONCLUSIVE
    fewer = _run("TERMINAL-COUNT", _obs(named[:2]), profile)
    assert fewer.status is Status.PASS and fewer.reason == "below_licence"
    none = _run("TERMINAL-COUNT", _obs([]), profile)
    assert none.status is Status.INCONCLUSIVE


def test_evaluate_covers_the_catalogue_with_words_and_law(profile):
    findings = evaluate(_obs([("198.18.40.21", "02:00:00:00:00:02", "PC1")]), profile, load_ruleset())
    ids = [f.check_id for f in findings]
    assert ids[:2] == ["IP-MAP", "TERMINAL-COUNT"] and len(ids) == len(set(ids)) >= 11
    for f in findings:
        assert f.summary_zh and f.summary_en and f.title_zh
        if f.status in (Status.PASS, Status.FAIL):
            assert f.legal_basis
    assert all(f.status is Status.MANUAL for f in findings if f.check_id not in CHECKS)


def test_hosts_acting_as_routers_or_dhcp_servers_are_not_terminals(profile):
    from probe.observations import DhcpDiscovery, DhcpOffer, Forwarder, ForwardingTest

    obs = _obs([
        ("198.18.40.21", "02:00:00:00:00:02", "PC1"),
        ("198.18.40.22", "02:00:00:00:00:03", "PC2"),
        ("198.18.40.99", "02:00:00:00:00:0a", None),   # a plugged-in router: forwards
        ("198.18.40.98", "02:00:00:00:00:0b", None),   # a rogue DHCP server
        ("198.18.40.97", "02:00:00:00:00:0c", None),   # same address as nothing acting: a terminal still
    ])
    obs.forwarding = ForwardingTest(target="203.0.113.80", port=80, hosts=5, syn_enabled=True, follow_hops=0,
                                    forwarders=[Forwarder(address="198.18.40.99", mac="02:00:00:00:00:0a",
                                                          how="ttl_exceeded", answered_from="198.18.40.99",
                                                          rtt_ms=0.4)])
    obs.dhcp = DhcpDiscovery(xid=1, chaddr="02:00:00:00:00:fe", sent=3, window_seconds=5.0, offers=[
        DhcpOffer(server_id="198.18.40.98", source_mac="02:00:00:00:00:0b", source_ip="198.18.40.98",
                  offered_address="198.18.40.200", first_seen=1.0)])
    ctx = CheckContext(observations=obs, profile=profile)
    assert {str(h.address) for h in ctx.terminals} == {"198.18.40.21", "198.18.40.22", "198.18.40.97"}
    count = _run("TERMINAL-COUNT", obs, profile)
    assert count.evidence["seen"] == 3
    # the same address from another MAC is not the router: it stays a terminal
    obs.forwarding.forwarders[0].mac = "02:00:00:00:00:0d"
    ctx = CheckContext(observations=obs, profile=profile)
    assert "198.18.40.99" in {str(h.address) for h in ctx.terminals}
