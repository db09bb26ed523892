"""The venue matcher (probe/venue_match.py): pure rules over signals, checked by example and by hypothesis.

Also the pure part of address claiming (probe/net/address.py): which addresses a probe may try.
"""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, collapse_addresses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from probe.net.address import ClaimedAddress, free_candidates, reserved_addresses
from probe.net.identify import gateway_targets
from probe.observations import ArpSender, DhcpOffer, GatewayAnswer, VenueSignals
from probe.profile import Network, parse_profile
from probe.venue_match import MARGIN, Identification, match_venues

A = IPv4Address
ROUTER_MAC = "00:0e:c6:bd:5a:68"
OTHER_MAC = "02:aa:bb:cc:dd:01"


def net(**fields) -> Network:
    return Network.model_validate(fields)


def offer(server: str | None, offered: str, routers: tuple[str, ...] = (), source: str | None = None,
          mac: str = ROUTER_MAC) -> DhcpOffer:
    return DhcpOffer(server_id=A(server) if server else None, source_mac=mac, source_ip=A(source or server or "0.0.0.0"),
                     offered_address=A(offered), routers=[A(r) for r in routers], first_seen=1.0)


def signals(answers: list[tuple[str, str]] = (), offers: list[DhcpOffer] = (), heard: list[tuple[str, str]] = (),
            asked: list[str] | None = None) -> VenueSignals:
    asked = asked if asked is not None else [a for a, _ in answers]
    return VenueSignals(interface="eth0", probe_mac="00:1e:06:00:00:01", asked=[A(a) for a in dict.fromkeys(asked)],
                        gateway_answers=[GatewayAnswer(address=A(a), mac=m, count=1) for a, m in answers],
                        offers=list(offers), heard=[ArpSender(address=A(a), mac=m) for a, m in heard], seconds=5.0)


# The lab's small café as a staged venue, a twin with its LAN plan behind another router, and another café.
SMALL = net(subnets=["198.18.5.0/24"], gateways=["198.18.5.1"], dhcp_servers=["198.18.5.1"],
            gateway_macs={"198.18.5.1": ROUTER_MAC})
TWIN = net(subnets=["198.18.5.0/24"], gateways=["198.18.5.1"], dhcp_servers=["198.18.5.1"],
           gateway_macs={"198.18.5.1": OTHER_MAC})
MESSY = net(subnets=["198.18.10.0/24"], gateways=["198.18.10.254"], dhcp_servers=["198.18.10.254"])
IN_SMALL = signals(answers=[("198.18.5.1", ROUTER_MAC)],
                   offers=[offer("198.18.5.1", "198.18.5.213", ("198.18.5.1",))],
                   heard=[("198.18.5.1", ROUTER_MAC), ("198.18.5.101", "02:00:00:00:00:65")],
                   asked=["198.18.5.1", "198.18.10.254"])


def no_mac(network: Network) -> Network:
    return network.model_copy(update={"gateway_macs": {}})


def one_line(result: Identification) -> None:
    assert "\n" not in result.reason and " / " in result.reason, result.reason


# ---------------------------------------------------------------------------
# By example


def test_the_right_venue_among_a_twin_and_another_cafe():
    result = match_venues(IN_SMALL, [("TWIN", TWIN), ("SMALL", SMALL), ("MESSY", MESSY)])
    assert (result.outcome, result.chosen, result.fits) == ("match", "SMALL", ["SMALL"])
    by_id = {s.venue_id: s for s in result.scores}
    assert {c.kind for c in by_id["SMALL"].evidence} == {"gateway_mac", "dhcp_server", "heard"}
    assert [c.kind for c in by_id["TWIN"].contradictions] == ["gateway_mac_differs"]
    assert {c.kind for c in by_id["MESSY"].contradictions} == {"gateway_silent", "offers_outside"}
    assert result.reason.startswith("已识别场所 SMALL：") and "identified venue SMALL" in result.reason
    one_line(result)


def test_the_twin_alone_is_ruled_out_by_its_gateway_mac():
    result = match_venues(IN_SMALL, [("TWIN", TWIN)])
    assert (result.outcome, result.chosen, result.fits) == ("none", None, [])
    assert ROUTER_MAC in result.reason and OTHER_MAC in result.reason and "TWIN" in result.reason
    assert "与已预置的 1 个场所均不符" in result.reason and "matches none of the 1 staged venues" in result.reason
    one_line(result)


def test_two_venues_with_one_plan_and_no_macs_are_ambiguous():
    result = match_venues(IN_SMALL, [("SMALL", no_mac(SMALL)), ("TWIN", no_mac(TWIN)), ("MESSY", MESSY)])
    assert result.outcome == "ambiguous" and result.chosen is None
    assert sorted(result.fits) == ["SMALL", "TWIN"]
    assert "SMALL" in result.reason and "TWIN" in result.reason and "MAC" in result.reason
    one_line(result)


def test_a_registered_mac_that_answered_outranks_a_venue_without_macs():
    result = match_venues(IN_SMALL, [("TWIN", no_mac(TWIN)), ("SMALL", SMALL)])
    assert (result.outcome, result.chosen) == ("match", "SMALL")


def test_a_match_by_address_plan_only_says_so():
    result = match_venues(IN_SMALL, [("SMALL", no_mac(SMALL)), ("MESSY", MESSY)])
    assert (result.outcome, result.chosen) == ("match", "SMALL")
    assert "网关 MAC 未登记" in result.reason and "no gateway MAC registered" in result.reason


def test_no_candidates_and_duplicate_ids():
    result = match_venues(IN_SMALL, [])
    assert result.outcome == "none" and "未预置任何场所" in result.reason
    with pytest.raises(ValueError):
        match_venues(IN_SMALL, [("A", SMALL), ("A", TWIN)])


def test_a_cafe_that_matches_nothing_says_what_was_heard():
    other = net(subnets=["198.18.30.0/24"], gateways=["198.18.30.1"])
    # Same subnet as the café, but another gateway and no DHCP server registered: only ARP senders inside.
    same_lan = net(subnets=["198.18.5.0/24"], gateways=["198.18.5.254"])
    heard = signals(answers=[], offers=IN_SMALL.offers, heard=[("198.18.5.1", ROUTER_MAC)],
                    asked=["198.18.10.254", "198.18.30.1", "198.18.5.254"])
    result = match_venues(heard, [("MESSY", MESSY), ("OTHER", other), ("SAME-LAN", same_lan)])
    assert result.outcome == "none" and result.chosen is None
    assert "DHCP 服务器 198.18.5.1→198.18.5.213" in result.reason
    assert "与已预置的 3 个场所均不符" in result.reason and "matches none of the 3 staged venues" in result.reason
    assert "MESSY" in result.reason  # ruled out by its registered DHCP server's silence
    assert {s.venue_id: s.tier for s in result.scores}["SAME-LAN"] == 1
    one_line(result)


def test_a_static_cafe_with_a_rogue_dhcp_server_is_still_identified():
    static = net(subnets=["192.168.10.0/24"], gateways=["192.168.10.1"], gateway_macs={"192.168.10.1": ROUTER_MAC})
    rogue = signals(answers=[("192.168.10.1", ROUTER_MAC)],
                    offers=[offer("192.168.0.1", "192.168.0.100", ("192.168.0.1",), mac=OTHER_MAC)])
    result = match_venues(rogue, [("STATIC", static)])
    assert (result.outcome, result.chosen) == ("match", "STATIC")
    assert not result.scores[0].contradictions


def test_a_venue_expecting_its_dhcp_server_is_ruled_out_by_offers_from_elsewhere_only():
    venue = net(subnets=["192.168.10.0/24"], gateways=["192.168.10.1"], dhcp_servers=["192.168.10.1"])
    rogue = signals(answers=[("192.168.10.1", ROUTER_MAC)],
                    offers=[offer("192.168.0.1", "192.168.0.100", ("192.168.0.1",), mac=OTHER_MAC)])
    result = match_venues(rogue, [("V", venue)])
    assert result.outcome == "none" and "192.168.0.1→192.168.0.100" in result.reason


def test_lost_answers_are_made_up_by_the_gateways_own_arp():
    lossy = signals(answers=[], offers=[], heard=[("198.18.5.1", ROUTER_MAC)], asked=["198.18.5.1", "198.18.10.254"])
    result = match_venues(lossy, [("SMALL", SMALL), ("TWIN", TWIN), ("MESSY", MESSY)])
    assert (result.outcome, result.chosen) == ("match", "SMALL")


def test_lost_offers_alone_do_not_stop_a_match_by_gateway():
    result = match_venues(signals(answers=[("198.18.5.1", ROUTER_MAC)]), [("SMALL", SMALL), ("MESSY", MESSY)])
    assert (result.outcome, result.chosen) == ("match", "SMALL")


def test_nothing_heard_is_none():
    result = match_venues(signals(asked=["198.18.5.1"]), [("SMALL", SMALL)])
    assert result.outcome == "none" and "均无应答" in result.reason and "no DHCP offer" in result.reason


def test_several_subnets_and_gateways_other_prefix_lengths():
    venue = net(subnets=["10.20.0.0/23", "10.30.4.0/26"], gateways=["10.20.1.254", "10.30.4.1"],
                gateway_macs={"10.30.4.1": ROUTER_MAC}, dhcp_servers=["10.30.4.2"])
    # Only the second line's gateway is up; the DHCP server offers from the first subnet.
    seen = signals(answers=[("10.30.4.1", ROUTER_MAC)], offers=[offer("10.30.4.2", "10.20.1.7", ("10.20.1.254",))],
                   asked=["10.20.1.254", "10.30.4.1", "10.20.0.1"])
    cramped = net(subnets=["10.20.0.0/24"], gateways=["10.20.0.1"])
    result = match_venues(seen, [("V", venue), ("CRAMPED", cramped)])
    assert (result.outcome, result.chosen) == ("match", "V")
    by_id = {s.venue_id: s for s in result.scores}
    assert {c.kind for c in by_id["V"].evidence} == {"gateway_mac", "dhcp_server"}
    assert [c.kind for c in by_id["CRAMPED"].contradictions] == ["gateway_silent"]


def test_one_of_several_macs_answering_is_enough():
    seen = signals(answers=[("198.18.5.1", OTHER_MAC), ("198.18.5.1", ROUTER_MAC)])
    assert match_venues(seen, [("SMALL", SMALL)]).chosen == "SMALL"


def test_an_extra_registered_gateway_is_no_clear_lead():
    two = net(subnets=["198.18.5.0/24"], gateways=["198.18.5.1", "198.18.5.2"])
    one = net(subnets=["198.18.5.0/24"], gateways=["198.18.5.1"])
    seen = signals(answers=[("198.18.5.1", ROUTER_MAC), ("198.18.5.2", OTHER_MAC)])
    result = match_venues(seen, [("TWO", two), ("ONE", one)])
    assert result.outcome == "ambiguous" and sorted(result.fits) == ["ONE", "TWO"]
    assert result.scores[0].score - result.scores[1].score < MARGIN


def test_an_offer_without_server_id_is_judged_by_its_source():
    venue = net(subnets=["198.18.5.0/24"], dhcp_servers=["198.18.5.1"])
    seen = signals(offers=[offer(None, "198.18.5.200", source="198.18.5.1")])
    result = match_venues(seen, [("V", venue)])
    assert result.chosen == "V" and result.scores[0].evidence[0].kind == "dhcp_server"


def test_a_bigger_plan_is_not_matched_by_a_router_it_did_not_register():
    wide = net(subnets=["198.18.0.0/16"], gateways=["198.18.10.254"], dhcp_servers=[])
    result = match_venues(IN_SMALL, [("WIDE", wide)])
    assert result.outcome == "none"


# ---------------------------------------------------------------------------
# By hypothesis

POOL = [A(f"198.18.{n}.{h}") for n in range(3) for h in (0, 1, 2, 7, 100, 254, 255)] + [A("10.0.0.1")]
MACS = ["00:0e:c6:00:00:01", "00:0e:c6:00:00:02", "02:aa:00:00:00:03", "02:aa:00:00:00:04"]
NETS = [IPv4Network(n) for n in ("198.18.0.0/24", "198.18.1.0/24", "198.18.0.0/23", "198.18.2.0/25",
                                 "198.18.2.128/25", "198.18.0.0/30", "198.18.1.252/30", "10.0.0.0/8",
                                 "198.18.0.0/16", "198.18.2.7/32")]
UNRELATED = [A(f"100.64.0.{h}") for h in (1, 2, 3)]

addresses = st.sampled_from(POOL)
macs = st.sampled_from(MACS)


@st.composite
def offers_st(draw) -> DhcpOffer:
    return DhcpOffer(server_id=draw(st.none() | addresses), source_mac=draw(macs), source_ip=draw(addresses),
                     offered_address=draw(addresses), routers=draw(st.lists(addresses, max_size=2)), first_seen=0.5)


@st.composite
def signals_st(draw) -> VenueSignals:
    answers = draw(st.lists(st.tuples(addresses, macs), max_size=4, unique=True))
    asked = draw(st.lists(addresses, max_size=6)) + [a for a, _ in answers]
    return VenueSignals(
        interface="eth0", probe_mac="00:1e:06:00:00:01", asked=list(dict.fromkeys(asked)),
        gateway_answers=[GatewayAnswer(address=a, mac=m, count=draw(st.integers(1, 3))) for a, m in answers],
        offers=draw(st.lists(offers_st(), max_size=3)),
        heard=[ArpSender(address=a, mac=m) for a, m in draw(st.lists(st.tuples(addresses, macs), max_size=5))],
        heard_dropped=draw(st.integers(0, 3)), seconds=5.0)


@st.composite
def network_st(draw, pool=addresses) -> Network:
    chosen: list[IPv4Network] = []
    for candidate in draw(st.lists(st.sampled_from(NETS), min_size=1, max_size=3)):
        if not any(candidate.overlaps(c) for c in chosen):
            chosen.append(candidate)
    gateways = draw(st.lists(pool, max_size=2, unique=True))
    with_mac = draw(st.lists(st.sampled_from(gateways), unique=True)) if gateways else []
    return net(subnets=chosen, gateways=gateways, dhcp_servers=draw(st.lists(pool, max_size=2, unique=True)),
               gateway_macs={g: draw(macs) for g in with_mac})


candidates_st = st.lists(network_st(), max_size=5).map(lambda nets: [(f"V{k}", n) for k, n in enumerate(nets)])


def built_from(sig: VenueSignals) -> Network:
    """A venue registered exactly as the signals show it: answering gateways with their MACs, offering servers."""
    gateways = list(dict.fromkeys(a.address for a in sig.gateway_answers))
    macs_of = {a.address: a.mac for a in sig.gateway_answers}
    servers = list(dict.fromkeys(o.server_id or o.source_ip for o in sig.offers))
    spots = gateways + servers + [o.offered_address for o in sig.offers] + [r for o in sig.offers for r in o.routers]
    subnets = list(collapse_addresses(IPv4Network(f"{a}/24", strict=False) for a in spots))
    return net(subnets=subnets, gateways=gateways, dhcp_servers=servers, gateway_macs=macs_of)


def consistent(result: Identification, ids: list[str]) -> None:
    by_id = {s.venue_id: s for s in result.scores}
    assert set(by_id) == set(ids)
    one_line(result)
    if result.outcome == "match":
        assert result.chosen in ids and result.fits == [result.chosen] and by_id[result.chosen].fits
    elif result.outcome == "ambiguous":
        assert result.chosen is None and len(result.fits) >= 2 and all(by_id[v].fits for v in result.fits)
    else:
        assert result.chosen is None and not result.fits and not any(s.fits for s in result.scores)


@settings(max_examples=300, deadline=None)
@given(signals_st(), candidates_st)
def test_never_crashes_and_the_verdict_agrees_with_the_scores(sig, candidates):
    consistent(match_venues(sig, candidates), [v for v, _ in candidates])


@settings(max_examples=200, deadline=None)
@given(signals_st(), candidates_st, st.randoms(use_true_random=False))
def test_the_order_of_the_candidates_does_not_matter(sig, candidates, rnd):
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    first, second = match_venues(sig, candidates), match_venues(sig, shuffled)
    assert (first.outcome, first.chosen, sorted(first.fits)) == (second.outcome, second.chosen, sorted(second.fits))


@settings(max_examples=300, deadline=None)
@given(signals_st())
def test_a_venue_registered_as_observed_matches_when_alone(sig):
    assume(sig.gateway_answers or sig.offers)
    result = match_venues(sig, [("BUILT", built_from(sig))])
    assert (result.outcome, result.chosen) == ("match", "BUILT"), result.reason


@settings(max_examples=300, deadline=None)
@given(signals_st(), candidates_st)
def test_a_venue_registered_as_observed_always_fits(sig, candidates):
    assume(sig.gateway_answers or sig.offers)
    result = match_venues(sig, [*candidates, ("BUILT", built_from(sig))])
    assert result.outcome != "none", result.reason
    assert next(s for s in result.scores if s.venue_id == "BUILT").fits


@settings(max_examples=300, deadline=None)
@given(signals_st(), candidates_st, network_st(pool=st.sampled_from(UNRELATED)))
def test_an_unrelated_venue_never_changes_the_verdict(sig, candidates, unrelated):
    unrelated = unrelated.model_copy(update={"subnets": [IPv4Network("100.64.0.0/24")]})
    before = match_venues(sig, candidates)
    after = match_venues(sig, [*candidates, ("UNRELATED", unrelated)])
    assert (before.outcome, before.chosen, before.fits) == (after.outcome, after.chosen, after.fits)


# ---------------------------------------------------------------------------
# Which addresses the collector asks and the claim may try


def test_gateway_targets_are_unique_unicast_and_capped():
    asked = gateway_targets([A("198.18.5.1"), A("0.0.0.0"), A("198.18.5.1"), A("224.0.0.1"), A("127.0.0.1"),
                             A("255.255.255.255"), A("10.0.0.1")])
    assert asked == [A("198.18.5.1"), A("10.0.0.1")]
    assert len(gateway_targets(A(f"10.0.{n // 256}.{n % 256}") for n in range(1, 200))) == 64


def test_free_candidates_run_down_from_the_top_past_the_reserved():
    venue = net(subnets=["198.18.5.0/24", "198.18.6.0/24"], gateways=["198.18.5.254"], dhcp_servers=["198.18.5.253"])
    assert free_candidates(venue, avoid=[A("198.18.5.251")], limit=3) == [A("198.18.5.252"), A("198.18.5.250"),
                                                                          A("198.18.5.249")]
    tiny = net(subnets=["198.18.7.0/30"], gateways=["198.18.7.1"])
    assert free_candidates(tiny) == [A("198.18.7.2")]
    assert free_candidates(net(subnets=["198.18.7.4/31"])) == [A("198.18.7.5"), A("198.18.7.4")]
    assert free_candidates(net(subnets=["198.18.7.9/32"])) == [A("198.18.7.9")]


def test_reserved_addresses_hold_servers_and_the_numbered_terminals():
    text = """
venue: {id: V-1, name: 测试, credit_code: 91350105MA2Y0AB12L, address: x, licensed_terminals: 30, licensed_servers: 2}
network: {subnets: [198.18.5.0/24], gateways: [198.18.5.1], dhcp_servers: [198.18.5.2]}
terminals: {first_address: 198.18.5.101}
servers:
  billing: [{address: 198.18.5.10, product: labbill-alpha}]
  audit: [{address: 198.18.5.11, product: labaudit}]
"""
    reserved = reserved_addresses(parse_profile(text, "."))
    expected = {A("198.18.5.1"), A("198.18.5.2"), A("198.18.5.10"), A("198.18.5.11")}
    expected |= {A(f"198.18.5.{n}") for n in range(101, 131)}
    assert reserved == expected


def test_a_claimed_address_is_an_interface_that_keeps_how_it_was_chosen():
    claimed = ClaimedAddress.of(IPv4Interface("198.18.5.100/27"), "picked", True, {A("198.18.5.101"): ROUTER_MAC})
    for again in (claimed, copy.deepcopy(claimed), pickle.loads(pickle.dumps(claimed))):
        assert again == IPv4Interface("198.18.5.100/27") and again.network == IPv4Network("198.18.5.96/27")
        assert (again.how, again.added, again.taken) == ("picked", True, {A("198.18.5.101"): ROUTER_MAC})
