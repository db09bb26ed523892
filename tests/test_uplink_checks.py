"""DUAL-UPLINK, ROGUE-DHCP and FOREIGN-SUBNET as pure functions, on real observation models built by hand.

Every status and reason of the three checks, with the exact evidence, and
the same observations through ``probe.evaluate`` (what ``cafe-probe
evaluate`` runs) with the catalogue's words.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from probe.checks import CHECKS, CheckContext
from probe.evaluate import evaluate
from probe.findings import Status
from probe.observations import (ArpPacket, DhcpDiscovery, DhcpOffer, DhcpServerMessage, ForeignArpAnswer,
                                ForeignArpProbe, Forwarder, ForwardingHop, ForwardingTest, Observations, PassiveArp,
                                SnmpDevice, SnmpInterface, SnmpRoute)
from probe.profile import VenueProfile, parse_profile
from probe.rules import load_ruleset
from tests.reportkit import make_observations

A = IPv4Address
GW, GW_MAC = "198.18.7.1", "02:00:00:00:07:01"
PROBE_MAC = "02:00:00:00:00:fe"
ROGUE_MAC = "02:00:00:00:07:66"

PROFILE = """
venue: {{id: T-7, name: 测试网吧, licensed_terminals: 10}}
network:
  subnets: [198.18.7.0/24]
  gateways: [198.18.7.1]
  dhcp_servers: {dhcp}
  external_target: 203.0.113.80
  egress: {egress}
terminals: {{first_address: 198.18.7.101}}
servers:
  snmp: [{{address: 198.18.7.1, community_file: community, role: router, uplinks: {uplinks}}}]
"""


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("profile")
    secret = directory / "community"
    secret.write_text("public\n")
    os.chmod(secret, 0o600)
    return directory


@pytest.fixture(scope="module")
def make_profile(profile_dir):
    def make(dhcp: str = "[198.18.7.1]", egress: str = "[]", uplinks: int = 1) -> VenueProfile:
        return parse_profile(PROFILE.format(dhcp=dhcp, egress=egress, uplinks=uplinks), profile_dir)
    return make


@pytest.fixture(scope="module")
def profile(make_profile) -> VenueProfile:
    return make_profile()


def _obs(hosts: list[tuple[str, str]] | None = None, **update: Any) -> Observations:
    """A run on 198.18.7.0/24 (probe .250): the gateway and one terminal answer the sweep; ``update`` sets fields."""
    hosts = [(GW, GW_MAC), ("198.18.7.101", "02:00:00:00:07:65")] if hosts is None else hosts
    obs = make_observations(hosts=[(a, m, None) for a, m in hosts], subnet="198.18.7.0/24",
                            probe_address="198.18.7.250")
    return obs.model_copy(update=update)


def _run(check_id: str, obs: Observations, profile: VenueProfile):
    thresholds = dict(load_ruleset().checks[check_id].thresholds)
    return CHECKS[check_id](CheckContext(observations=obs, profile=profile, thresholds=thresholds))


def _finding(check_id: str, obs: Observations, profile: VenueProfile):
    """What ``cafe-probe evaluate`` reports for the check, from the observations as saved on disk."""
    saved = Observations.model_validate_json(obs.model_dump_json())
    return next(f for f in evaluate(saved, profile, load_ruleset()) if f.check_id == check_id)


def _assert_reported(check_id: str, obs: Observations, profile: VenueProfile, verdict, *needles: str) -> None:
    """The rendered finding carries the verdict, the catalogue's words filled in, and the law."""
    f = _finding(check_id, obs, profile)
    assert (f.status, f.evidence) == (verdict.status, json.loads(json.dumps(verdict.evidence)))
    rule = load_ruleset().checks[check_id]
    assert f.summary_zh == rule.messages[verdict.reason].zh.format_map(verdict.values)
    assert f.summary_en == rule.messages[verdict.reason].en.format_map(verdict.values)
    for needle in needles:
        assert needle in f.summary_zh and needle in f.summary_en, needle
    assert f.legal_basis and f.result_type == ("pending_followup" if f.status is Status.FAIL else None)


# ------------------------------------------------------------------ ROGUE-DHCP


def _offer(server_id: str | None, mac: str, source_ip: str | None = None, router: str | None = None,
           at: float = 1.0) -> DhcpOffer:
    return DhcpOffer(server_id=A(server_id) if server_id else None, source_mac=mac,
                     source_ip=A(source_ip or server_id), offered_address=A("198.18.7.200"),
                     routers=[A(router)] if router else [], first_seen=at)


def _heard(server_id: str | None, mac: str, kind: int, source_ip: str | None = None,
           router: str | None = None) -> DhcpServerMessage:
    return DhcpServerMessage(time=9.0, server_id=A(server_id) if server_id else None, source_mac=mac,
                             source_ip=A(source_ip or server_id), message_type=kind, client_mac="02:00:00:00:07:65",
                             routers=[A(router)] if router else [])


def _discovery(*offers: DhcpOffer) -> DhcpDiscovery:
    return DhcpDiscovery(xid=1, chaddr=PROBE_MAC, sent=3, window_seconds=5.0, offers=list(offers))


def _server(server_id, mac, registered, seen, router=None, source_ip=None) -> dict:
    return {"server_id": server_id, "source_ip": source_ip or server_id, "mac": mac, "router": router,
            "registered": registered, "seen": seen}


def test_rogue_dhcp_not_run(profile):
    obs = _obs()
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == {"servers": [], "registered": [GW], "discover_sent": None, "passive_messages": 0,
                          "observations": ["dhcp.offers", "dhcp_server_messages", "arp.hosts"]}
    _assert_reported("ROGUE-DHCP", obs, profile, v)


def test_rogue_dhcp_no_server_answered_is_a_pass_that_says_so(profile):
    obs = _obs(dhcp=_discovery())
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason, v.values) == (Status.PASS, "no_server", {"sent": 3, "window": 5.0})
    assert v.evidence["servers"] == [] and v.evidence["discover_sent"] == 3
    _assert_reported("ROGUE-DHCP", obs, profile, v, "3", "5.0")


def test_rogue_dhcp_registered_server_heard_both_ways(profile):
    obs = _obs(dhcp=_discovery(_offer(GW, GW_MAC, router=GW)),
               dhcp_server_messages=[_heard(GW, GW_MAC, 5, router=GW), _heard(GW, GW_MAC, 6)])
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "all_registered")
    assert v.evidence["servers"] == [_server(GW, GW_MAC, True, "both", router=GW)]
    assert v.evidence["passive_messages"] == 2
    _assert_reported("ROGUE-DHCP", obs, profile, v, f"{GW} ({GW_MAC})")


def test_rogue_dhcp_registered_address_unseen_by_the_sweep_is_accepted_on_address(profile):
    obs = _obs(hosts=[("198.18.7.101", "02:00:00:00:07:65")], dhcp_server_messages=[_heard(GW, "02:00:00:00:07:99", 5)])
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "all_registered")
    assert v.evidence["servers"] == [_server(GW, "02:00:00:00:07:99", True, "passive")]


def test_rogue_dhcp_unregistered_servers(profile):
    obs = _obs(dhcp=_discovery(_offer(GW, GW_MAC, router=GW), _offer("198.18.7.66", ROGUE_MAC, router="198.18.7.66")),
               dhcp_server_messages=[_heard(None, "02:00:00:00:02:01", 2, source_ip="192.0.2.1", router="192.0.2.1"),
                                     _heard("198.18.7.66", ROGUE_MAC, 5)])
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "unregistered")
    assert v.evidence["servers"] == [
        _server(None, "02:00:00:00:02:01", False, "passive", router="192.0.2.1", source_ip="192.0.2.1"),
        _server(GW, GW_MAC, True, "discover", router=GW),
        _server("198.18.7.66", ROGUE_MAC, False, "both", router="198.18.7.66"),
    ]
    assert v.values == {"count": 2, "total": 3,
                        "rogue": f"192.0.2.1 (02:00:00:00:02:01), 198.18.7.66 ({ROGUE_MAC})"}
    _assert_reported("ROGUE-DHCP", obs, profile, v, "198.18.7.66", "192.0.2.1")


def test_rogue_dhcp_registered_address_from_another_mac_is_impersonation(profile):
    obs = _obs(dhcp=_discovery(_offer(GW, GW_MAC, router=GW), _offer(GW, ROGUE_MAC, router=GW, at=2.0)))
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "impersonated")
    assert v.evidence["servers"] == [_server(GW, GW_MAC, True, "discover", router=GW),
                                     _server(GW, ROGUE_MAC, False, "discover", router=GW)]
    assert v.values["impersonated"] == f"{GW} ({ROGUE_MAC} ≠ {GW_MAC})"
    _assert_reported("ROGUE-DHCP", obs, profile, v, ROGUE_MAC, "≠")


def test_rogue_dhcp_profile_registering_no_server(make_profile):
    profile = make_profile(dhcp="[]")
    obs = _obs(dhcp=_discovery(_offer(GW, GW_MAC, router=GW)))
    v = _run("ROGUE-DHCP", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "none_registered")
    assert v.evidence["servers"] == [_server(GW, GW_MAC, False, "discover", router=GW)]
    assert v.evidence["registered"] == []
    _assert_reported("ROGUE-DHCP", obs, profile, v, f"{GW} ({GW_MAC})")


def test_rogue_dhcp_summary_names_at_most_the_catalogue_limit(profile):
    offers = [_offer(f"198.18.7.{60 + i}", f"02:00:00:00:08:{i:02x}") for i in range(7)]
    v = _run("ROGUE-DHCP", _obs(dhcp=_discovery(*offers)), profile)
    assert v.values["rogue"].endswith(" … (+2)") and v.values["rogue"].count("(02:") == 5
    assert len(v.evidence["servers"]) == 7


# -------------------------------------------------------------- FOREIGN-SUBNET


def _arp(sender_ip: str, sender_mac: str, op: int = 1, target_ip: str = GW, eth_src: str | None = None) -> ArpPacket:
    return ArpPacket(time=1.0, op=op, eth_src=eth_src or sender_mac, sender_mac=sender_mac, sender_ip=A(sender_ip),
                     target_mac="00:00:00:00:00:00", target_ip=A(target_ip))


LAN_ARP = [_arp("198.18.7.101", "02:00:00:00:07:65"),
           _arp("0.0.0.0", "02:00:00:00:07:77"),                     # an RFC 5227 probe: no address yet
           _arp("0.0.0.0", PROBE_MAC, target_ip="192.168.1.1"),      # the probe's own questions, looped back:
           _arp("198.18.99.250", PROBE_MAC)]                          # never foreign, whatever address it has
ASKED = [A("192.168.0.1"), A("192.168.1.1"), A("192.0.2.1")]


def _foreign(*answers: ForeignArpAnswer) -> ForeignArpProbe:
    return ForeignArpProbe(asked=ASKED, answers=list(answers), seconds=1.2)


def _fs_evidence(hosts=(), link_local=(), asked=3, packets=4) -> dict:
    return {"hosts": list(hosts), "link_local": list(link_local), "asked": asked, "arp_packets": packets,
            "arp_packets_dropped": 0, "subnets": ["198.18.7.0/24"],
            "observations": ["passive_arp.packets", "foreign_arp"]}


def test_foreign_subnet_nothing_ran(profile):
    obs = _obs()
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == _fs_evidence(asked=None, packets=0)
    _assert_reported("FOREIGN-SUBNET", obs, profile, v)


def test_foreign_subnet_listening_alone_is_not_enough(profile):
    obs = _obs(passive_arp=PassiveArp(packets=LAN_ARP))
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_asked")
    assert v.evidence == _fs_evidence(asked=None)
    _assert_reported("FOREIGN-SUBNET", obs, profile, v, "4")


def test_foreign_subnet_clean(profile):
    obs = _obs(passive_arp=PassiveArp(packets=LAN_ARP), foreign_arp=_foreign())
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason, v.values["asked"], v.values["packets"]) == (Status.PASS, "none_found", 3, 4)
    assert v.evidence == _fs_evidence()
    _assert_reported("FOREIGN-SUBNET", obs, profile, v)


def test_foreign_subnet_link_local_pc_is_noted_not_failed(profile):
    obs = _obs(passive_arp=PassiveArp(packets=[*LAN_ARP, _arp("169.254.20.7", "02:00:00:00:07:20")]),
               foreign_arp=_foreign())
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "link_local_only")
    assert v.evidence == _fs_evidence(link_local=[{"address": "169.254.20.7", "mac": "02:00:00:00:07:20",
                                                   "how": "passive", "asked_as": None}], packets=5)
    _assert_reported("FOREIGN-SUBNET", obs, profile, v, "169.254.20.7 (02:00:00:00:07:20)")


def test_foreign_subnet_hosts_heard_and_answering(profile):
    router, pc = "02:00:00:00:0f:01", "02:00:00:00:0f:02"
    obs = _obs(passive_arp=PassiveArp(packets=[*LAN_ARP, _arp("192.168.1.1", router, op=2),
                                               _arp("192.168.1.100", pc, target_ip="192.168.1.1")]),
               foreign_arp=_foreign(ForeignArpAnswer(address=A("192.168.1.1"), mac=router, asked_as="own_address"),
                                    ForeignArpAnswer(address=A("192.0.2.1"), mac="02:00:00:00:0f:03",
                                                     asked_as="probe")))
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "foreign_hosts")
    assert v.evidence == _fs_evidence(hosts=[
        {"address": "192.0.2.1", "mac": "02:00:00:00:0f:03", "how": "asked", "asked_as": "probe"},
        {"address": "192.168.1.1", "mac": router, "how": "both", "asked_as": "own_address"},
        {"address": "192.168.1.100", "mac": pc, "how": "passive", "asked_as": None},
    ], packets=6)
    assert v.values["count"] == 3
    _assert_reported("FOREIGN-SUBNET", obs, profile, v, f"192.168.1.1 ({router})")


def test_foreign_subnet_fails_without_asking_and_notes_link_local(profile):
    obs = _obs(passive_arp=PassiveArp(packets=[_arp("192.168.1.1", "02:00:00:00:0f:01"),
                                               _arp("169.254.1.1", "02:00:00:00:0f:09")]))
    v = _run("FOREIGN-SUBNET", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "foreign_hosts_and_link_local")
    assert [h["address"] for h in v.evidence["hosts"]] == ["192.168.1.1"]
    assert [h["address"] for h in v.evidence["link_local"]] == ["169.254.1.1"] and v.evidence["asked"] is None
    _assert_reported("FOREIGN-SUBNET", obs, profile, v, "192.168.1.1", "169.254.1.1")


# ----------------------------------------------------------------- DUAL-UPLINK


def _fwd(address: str, mac: str, egress: str | None = None, how: str = "ttl_exceeded") -> Forwarder:
    path = [ForwardingHop(ttl=2, address=None), ForwardingHop(ttl=3, address=A(egress))] if egress else []
    return Forwarder(address=A(address), mac=mac, how=how, answered_from=A(address), rtt_ms=0.4, path=path)


def _test(*forwarders: Forwarder, syn: bool = True) -> ForwardingTest:
    return ForwardingTest(target=A("203.0.113.80"), port=80, hosts=2, ttl1_sent=2, syn_enabled=syn,
                          follow_hops=3, forwarders=list(forwarders))


def _iface(index: int, name: str, address: str | None, up: bool = True, type_: int = 6) -> SnmpInterface:
    return SnmpInterface(index=index, name=name, type=type_, admin_up=True, oper_up=up,
                         addresses=[IPv4Interface(address)] if address else [])


def _route(dest: str, hop: str | None, index: int | None, table: str = "inetCidrRouteTable") -> SnmpRoute:
    return SnmpRoute(destination=IPv4Network(dest), next_hop=A(hop) if hop else None, if_index=index, table=table)


# The registered router: one line up; the rest must not count as WAN lines.
ROUTER_IFACES = [_iface(1, "lo", "127.0.0.1/8", type_=24), _iface(2, "lan0", "198.18.7.1/24"),
                 _iface(3, "wan0", "203.0.113.2/24"), _iface(4, "wan1", "198.51.100.2/24", up=False),
                 _iface(5, "tun0", "127.0.0.2/8", type_=131), _iface(6, "eth9", None),
                 _iface(7, "lo1", "198.51.100.250/32", type_=24)]  # a management loopback: no line
ROUTER_ROUTES = [_route("0.0.0.0/0", "203.0.113.1", 3), _route("0.0.0.0/0", "203.0.113.1", 3, "ipRouteTable"),
                 _route("0.0.0.0/0", "203.0.113.1", None, "ipCidrRouteTable"),  # the same route, less said
                 _route("198.18.7.0/24", None, 2)]


def _router(interfaces=ROUTER_IFACES, routes=ROUTER_ROUTES, ok: bool = True, error: str | None = None):
    return SnmpDevice(address=A(GW), role="router", version="2c", ok=ok, error=error,
                      error_detail="no answer in 3 × 1 s" if error else None,
                      interfaces=interfaces if ok else [], routes=routes if ok else [])


def _snmp_row(wan_up=("wan0",), routes=(("203.0.113.1", 3, "wan0"),), uplinks=1, ok=True, error=None) -> dict:
    return {"address": GW, "ok": ok, "error": error, "error_detail": "no answer in 3 × 1 s" if error else None,
            "uplinks": uplinks, "wan_up": list(wan_up),
            "default_routes": [{"next_hop": h, "if_index": i, "interface": n} for h, i, n in routes]}


def _gw_row(egress: str | None = "203.0.113.1", mac: str = GW_MAC) -> dict:
    return {"address": GW, "mac": mac, "registered": True, "how": "ttl_exceeded", "egress": egress}


def _du_evidence(forwarders=(), egress=(), registered_egress=(), silent=(), ran=True, syn=True, snmp=(),
                 failed_on=()) -> dict:
    return {"forwarders": list(forwarders), "egress": list(egress), "egress_registered": list(registered_egress),
            "gateways": [GW], "gateways_silent": list(silent), "target": "203.0.113.80" if ran else None,
            "hosts_tested": 2 if ran else None, "syn_enabled": syn if ran else None,
            "follow_hops": 3 if ran else None, "snmp": list(snmp), "failed_on": list(failed_on),
            "observations": ["forwarding", "snmp"]}


def test_dual_uplink_not_run(profile):
    obs = _obs()
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == _du_evidence(ran=False)
    _assert_reported("DUAL-UPLINK", obs, profile, v, "external_target")


def test_dual_uplink_not_run_and_router_unreadable(profile):
    obs = _obs(snmp=[_router(ok=False, error="timeout")])
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason, v.values) == (Status.INCONCLUSIVE, "not_run_and_unreadable",
                                              {"routers": f"{GW} (timeout)"})
    assert v.evidence == _du_evidence(ran=False, snmp=[_snmp_row(wan_up=(), routes=(), ok=False, error="timeout")])
    _assert_reported("DUAL-UPLINK", obs, profile, v, f"{GW} (timeout)")


def test_dual_uplink_router_unreadable(profile):
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC)), snmp=[_router(ok=False, error="auth")])
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "snmp_unreadable")
    assert v.evidence == _du_evidence(forwarders=[_gw_row(egress=None)],
                                      snmp=[_snmp_row(wan_up=(), routes=(), ok=False, error="auth")])
    _assert_reported("DUAL-UPLINK", obs, profile, v, f"{GW} (auth)")


def test_dual_uplink_registered_gateway_and_line_only(make_profile):
    profile = make_profile(egress="[203.0.113.1]")
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC, egress="203.0.113.1")), snmp=[_router()])
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason, v.values) == (Status.PASS, "registered_only", {"hosts": 2, "forwarders": 1,
                                                                               "routers": 1})
    assert v.evidence == _du_evidence(forwarders=[_gw_row()], egress=["203.0.113.1"],
                                      registered_egress=["203.0.113.1"], snmp=[_snmp_row()])
    _assert_reported("DUAL-UPLINK", obs, profile, v)


def test_dual_uplink_silent_gateway_is_noted_not_failed(profile):
    obs = _obs(forwarding=_test(syn=False))
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "gateways_silent")
    assert v.evidence == _du_evidence(silent=[GW], syn=False)
    _assert_reported("DUAL-UPLINK", obs, profile, v, GW)


def test_dual_uplink_unregistered_forwarder(profile):
    second = [*ROUTER_IFACES[:4], _iface(4, "wan1", "198.51.100.2/24")]
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC, egress="203.0.113.1"),
                                _fwd("198.18.7.66", ROGUE_MAC, egress="198.51.100.1", how="tcp_answer")),
               snmp=[_router(interfaces=second)])
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "unregistered_forwarders")
    assert v.values == {"count": 1, "forwarders": f"198.18.7.66 ({ROGUE_MAC}) → 198.51.100.1"}
    assert v.evidence == _du_evidence(
        forwarders=[_gw_row(), {"address": "198.18.7.66", "mac": ROGUE_MAC, "registered": False,
                                "how": "tcp_answer", "egress": "198.51.100.1"}],
        egress=["203.0.113.1", "198.51.100.1"],
        snmp=[_snmp_row(wan_up=("wan0", "wan1"))], failed_on=["forwarder", "egress", "snmp"])
    _assert_reported("DUAL-UPLINK", obs, profile, v, "198.18.7.66", "198.51.100.1")


def test_dual_uplink_registered_gateway_leading_elsewhere(make_profile):
    profile = make_profile(egress="[203.0.113.1]")
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC, egress="198.51.100.1")))
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "unregistered_egress")
    assert v.values == {"count": 1, "egress": "198.51.100.1", "registered": "203.0.113.1", "gateways": 1}
    assert v.evidence == _du_evidence(forwarders=[_gw_row(egress="198.51.100.1")], egress=["198.51.100.1"],
                                      registered_egress=["203.0.113.1"], failed_on=["egress"])
    _assert_reported("DUAL-UPLINK", obs, profile, v, "198.51.100.1", "203.0.113.1")


def test_dual_uplink_two_lines_behind_the_gateway_address(profile):
    """A second router set to the gateway's own address: registered by address, but two ways out."""
    obs = _obs(hosts=[(GW, GW_MAC), (GW, ROGUE_MAC)],
               forwarding=_test(_fwd(GW, GW_MAC, egress="203.0.113.1"), _fwd(GW, ROGUE_MAC, egress="198.51.100.1")))
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, "more_egress_than_gateways")
    assert v.values["count"] == 2 and v.values["gateways"] == 1
    assert v.evidence["egress"] == ["203.0.113.1", "198.51.100.1"] and v.evidence["failed_on"] == ["egress"]
    assert [f["registered"] for f in v.evidence["forwarders"]] == [True, True]
    _assert_reported("DUAL-UPLINK", obs, profile, v, "203.0.113.1, 198.51.100.1")


@pytest.mark.parametrize("change, wan_up, routes", [
    ("second_wan_up", ("wan0", "wan1"), (("203.0.113.1", 3, "wan0"),)),
    ("second_default_route", ("wan0",), (("203.0.113.1", 3, "wan0"), ("198.51.100.1", 4, "wan1"))),
])
def test_dual_uplink_router_with_more_lines_than_registered(make_profile, change, wan_up, routes):
    interfaces, table = list(ROUTER_IFACES), list(ROUTER_ROUTES)
    if change == "second_wan_up":
        interfaces[3] = _iface(4, "wan1", "198.51.100.2/24")
    else:
        table.append(_route("0.0.0.0/0", "198.51.100.1", 4))
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC)), snmp=[_router(interfaces=interfaces, routes=table)])
    v = _run("DUAL-UPLINK", obs, make_profile())
    assert (v.status, v.reason) == (Status.FAIL, "snmp_extra_uplinks")
    assert v.evidence["snmp"] == [_snmp_row(wan_up=wan_up, routes=routes)]
    assert v.evidence["failed_on"] == ["snmp"]
    assert v.values["routers"] == f"{GW} ({len(wan_up)}/{len(routes)}/1: {', '.join(wan_up)})"
    _assert_reported("DUAL-UPLINK", obs, make_profile(), v, GW)
    # the same router registered with two lines passes
    two = make_profile(uplinks=2)
    again = _run("DUAL-UPLINK", obs, two)
    assert (again.status, again.reason) == (Status.PASS, "registered_only")
    assert again.evidence["snmp"] == [_snmp_row(wan_up=wan_up, routes=routes, uplinks=2)]


def test_dual_uplink_interface_route_read_from_two_tables_is_one_line(profile):
    """A PPPoE line: the default route names no next hop (0.0.0.0 in one table, absent in the other)."""
    interfaces = [*ROUTER_IFACES[:2], _iface(8, "ppp0", "198.51.100.9/32")]
    routes = [_route("0.0.0.0/0", "0.0.0.0", 8), _route("0.0.0.0/0", None, 8, "ipRouteTable"),
              _route("0.0.0.0/0", None, None, "ipCidrRouteTable")]
    obs = _obs(forwarding=_test(_fwd(GW, GW_MAC)), snmp=[_router(interfaces=interfaces, routes=routes)])
    v = _run("DUAL-UPLINK", obs, profile)
    assert (v.status, v.reason) == (Status.PASS, "registered_only")
    assert v.evidence["snmp"] == [_snmp_row(wan_up=("ppp0",), routes=((None, 8, "ppp0"),))]


# --------------------------------------------------------------- all together


def test_saved_observations_of_before_still_load_and_evaluate(profile):
    """A file saved before dhcp_server_messages existed loads, and every finding renders from it."""
    doc = json.loads(_obs(dhcp=_discovery(_offer(GW, GW_MAC, router=GW))).model_dump_json())
    for key in ("dhcp_server_messages", "forwarding", "foreign_arp", "snmp"):
        doc.pop(key)
    obs = Observations.model_validate(doc)
    assert obs.dhcp_server_messages == []
    findings = {f.check_id: f for f in evaluate(obs, profile, load_ruleset())}
    assert [findings[c].status for c in ("ROGUE-DHCP", "FOREIGN-SUBNET", "DUAL-UPLINK")] == [
        Status.PASS, Status.INCONCLUSIVE, Status.INCONCLUSIVE]
    for f in findings.values():
        assert "{" not in f.summary_zh + f.summary_en
