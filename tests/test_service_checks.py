"""SERVER-COUNT, DUAL-BILLING, AUDIT-SYSTEM, REALNAME-CLIENT and VIDEO-SYSTEM as pure functions.

On real observation models built by hand: every status and reason of the five
checks with the exact evidence, and every reason through ``probe.evaluate``
(what ``cafe-probe evaluate`` runs) from observations as saved on disk, with
the catalogue's words filled in.

The café: 198.18.5.0/24, gateway .1, the registered billing server .5
(fictional LabBill Alpha) and audit server .6, terminals WB-1…WB-20 on
.101–.120; the venue stages its products' signatures in the profile.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from probe.checks import CHECKS, CheckContext
from probe.evaluate import INTERRUPTED, evaluate
from probe.findings import Status, Verdict
from probe.observations import (Camera, CameraProblem, CameraSurvey, Observations, OpenPort, ServiceHost, ServiceScan,
                                SignatureMatch)
from probe.profile import VenueProfile, parse_profile
from probe.rules import load_ruleset
from tests.reportkit import make_observations

A = IPv4Address
SHA = "5a" * 32
FIVE = ("SERVER-COUNT", "DUAL-BILLING", "AUDIT-SYSTEM", "REALNAME-CLIENT", "VIDEO-SYSTEM")


def ip(n: int) -> str:
    return f"198.18.5.{n}"


def mac(n: int) -> str:
    return f"02:00:00:00:05:{n:02x}"


def _sig(sid: str, role: str, port: int, product: str | None = None, match: str | None = None,
         confidence: float = 0.9) -> dict[str, Any]:
    return {"id": sid, "name": f"{sid} 实验产品 (fictional)", "role": role, "product": product, "ports": [port],
            "match": match, "confidence": confidence, "confirmed": match is not None,
            "source": "lab scenario: fictional product, staged by the technician"}


STAGED = {s["id"]: s for s in [
    _sig("lab-billing-alpha", "billing", 7001, "labbill-alpha", "^LABBILL-A"),
    _sig("lab-billing-beta", "billing", 7002, "labbill-beta", "^LABBILL-B"),
    _sig("lab-billing-port", "billing", 7003, confidence=0.3),            # an open port alone: weak
    _sig("lab-billing-generic", "billing", 7004, match="BILL", confidence=0.8),
    _sig("lab-audit", "audit", 7101, "labaudit", "^LABAUDIT"),
    _sig("lab-audit-port", "audit", 7102, confidence=0.3),
    _sig("lab-realname", "realname_client", 7201, match="^LABRN"),
]}
SHIPPED = ["lab-nvr", "mysql", "rtsp-generic"]  # ids of the ruleset's signatures in effect (not in the profile)
BILLING_STAGED = ["lab-billing-alpha", "lab-billing-beta", "lab-billing-generic", "lab-billing-port"]
NOT_BILLING = [s for s in STAGED if s not in BILLING_STAGED]


def _profile(licensed_servers: int | None = 2, billing=((5, "labbill-alpha"),), audit=((6, "labaudit"),),
             cameras: int = 0, nvrs: int = 0, staged=tuple(STAGED)) -> VenueProfile:
    venue = {"id": "T-5", "name": "测试网吧", "licensed_terminals": 30}
    if licensed_servers is not None:
        venue["licensed_servers"] = licensed_servers
    doc = {"venue": venue,
           "network": {"subnets": ["198.18.5.0/24"], "gateways": [ip(1)], "dhcp_servers": [ip(1)]},
           "terminals": {"hostname_pattern": r"^WB-(?P<number>\d+)$", "first_address": ip(101)},
           "servers": {"billing": [{"address": ip(n), "product": p} for n, p in billing],
                       "audit": [{"address": ip(n), "product": p} for n, p in audit],
                       "cameras": cameras, "nvrs": nvrs, "signatures": [STAGED[s] for s in staged]}}
    return parse_profile(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), Path("."))


def _m(n: int, role: str, sig: str, port: int, product: str | None = None, confidence: float = 0.9,
       origin: str = "profile") -> SignatureMatch:
    return SignatureMatch(address=A(ip(n)), mac=mac(n), port=port, signature=sig, role=role, product=product,
                          confidence=confidence, confirmed=confidence >= 0.5, origin=origin)


def alpha(n: int = 5) -> SignatureMatch:
    return _m(n, "billing", "lab-billing-alpha", 7001, "labbill-alpha")


def beta(n: int = 7) -> SignatureMatch:
    return _m(n, "billing", "lab-billing-beta", 7002, "labbill-beta")


def port_only(n: int) -> SignatureMatch:
    return _m(n, "billing", "lab-billing-port", 7003, confidence=0.3)


def audit(n: int = 6, product: str | None = "labaudit") -> SignatureMatch:
    return _m(n, "audit", "lab-audit", 7101, product)


def realname(n: int, confidence: float = 0.9) -> SignatureMatch:
    return _m(n, "realname_client", "lab-realname", 7201, confidence=confidence)


def database(n: int, confidence: float = 0.6) -> SignatureMatch:
    return _m(n, "database", "mysql", 3306, confidence=confidence, origin="rules")


def nvr(n: int = 8) -> SignatureMatch:
    return _m(n, "nvr", "lab-nvr", 8000, confidence=0.8, origin="rules")


def camera(n: int) -> SignatureMatch:
    return _m(n, "camera", "rtsp-generic", 554, confidence=0.7, origin="rules")


def _scan(*matches: SignatureMatch, signatures=(*STAGED, *SHIPPED)) -> ServiceScan:
    """A scan whose hosts showed exactly the ports their matches name, with an answer on each."""
    hosts: dict[tuple[IPv4Address, str], ServiceHost] = {}
    for m in matches:
        host = hosts.setdefault((m.address, m.mac), ServiceHost(address=m.address, mac=m.mac, filtered=[7201]))
        host.open.append(OpenPort(port=m.port, banner=f"{m.signature} ready", banner_bytes=20, rtt_ms=0.4))
    return ServiceScan(tcp_ports=sorted({m.port for m in matches} | {7201}), hosts=list(hosts.values()),
                       matches=list(matches), signatures=sorted(signatures), signatures_sha256=SHA,
                       max_concurrent=64, connect_rate=200.0, connections=len(matches) + 20, seconds=2.0)


def _obs(extra: tuple[int, ...] = (), terminals: int = 20, **update: Any) -> Observations:
    """Gateway, servers .5 and .6, hosts ``extra`` and ``terminals`` named terminals answer the sweep."""
    hosts = [(ip(n), mac(n), None) for n in (1, 5, 6, *extra)]
    hosts += [(ip(100 + i), mac(100 + i), f"WB-{i}") for i in range(1, terminals + 1)]
    obs = make_observations(hosts=hosts, subnet="198.18.5.0/24", probe_address="198.18.5.250")
    return obs.model_copy(update=update)


def _run(check_id: str, obs: Observations, profile: VenueProfile) -> Verdict:
    thresholds = dict(load_ruleset().checks[check_id].thresholds)
    return CHECKS[check_id](CheckContext(observations=obs, profile=profile, thresholds=thresholds))


def _assert_reported(check_id: str, obs: Observations, profile: VenueProfile, verdict: Verdict) -> None:
    """What ``cafe-probe evaluate`` reports from the saved observations: the verdict, the catalogue's words, the law."""
    saved = Observations.model_validate_json(obs.model_dump_json())
    f = next(f for f in evaluate(saved, profile, load_ruleset()) if f.check_id == check_id)
    assert (f.status, f.evidence) == (verdict.status, json.loads(json.dumps(verdict.evidence)))
    message = load_ruleset().checks[check_id].messages[verdict.reason]
    assert f.summary_zh == message.zh.format_map(verdict.values) and "{" not in f.summary_zh
    assert f.summary_en == message.en.format_map(verdict.values) and "{" not in f.summary_en
    assert f.legal_basis and f.result_type == ("pending_followup" if f.status is Status.FAIL else None)


# ---------------------------------------------------------------- SERVER-COUNT


def sc_not_run():
    return _obs(), _profile()


def sc_within():
    # .5 also answers a weak port-only signature: it is a server already, the weak match adds nothing
    return _obs(extra=(9,), services=_scan(alpha(), database(5), port_only(5), audit(), camera(9), realname(101))), \
        _profile()


def sc_below():
    return _obs(services=_scan(alpha(), audit(), port_only(101))), _profile(licensed_servers=3)


def sc_none_seen():
    return _obs(extra=(31,), services=_scan(camera(31), realname(101))), _profile()


def sc_over():
    return _obs(extra=(9,), services=_scan(alpha(), audit(), database(9, confidence=0.5))), _profile()


def sc_none_licensed():
    return _obs(services=_scan(alpha())), _profile(licensed_servers=None)


def sc_unclear():
    return _obs(services=_scan(alpha(), audit(), database(101, confidence=0.49))), _profile()


def _server(n: int, roles: list[str], signatures: list[str], confidence: float = 0.9) -> dict[str, Any]:
    return {"address": ip(n), "mac": mac(n), "roles": roles, "signatures": signatures, "confidence": confidence}


SERVERS_5_6 = [_server(5, ["billing"], ["lab-billing-alpha"]), _server(6, ["audit"], ["lab-audit"])]


def _sc_evidence(servers, licensed=2, uncertain=(), sha=SHA) -> dict[str, Any]:
    return {"servers": servers, "licensed": licensed, "uncertain": list(uncertain), "min_confidence": 0.5,
            "signatures_sha256": sha, "observations": ["services.matches"]}


def test_server_count_not_run():
    v = _run("SERVER-COUNT", *sc_not_run())
    assert (v.status, v.reason, v.values) == (Status.INCONCLUSIVE, "not_run", {})
    assert v.evidence == _sc_evidence([], sha=None)


def test_server_count_within_licence_weak_match_on_a_server_adds_nothing():
    v = _run("SERVER-COUNT", *sc_within())
    assert (v.status, v.reason) == (Status.PASS, "within_licence")
    assert v.evidence == _sc_evidence([_server(5, ["billing", "database"], ["lab-billing-alpha", "mysql"]),
                                       _server(6, ["audit"], ["lab-audit"])])
    assert v.values == {"seen": 2, "licensed": 2, "uncertain": 0,
                        "servers": f"{ip(5)} ({mac(5)}) [billing, database], {ip(6)} ({mac(6)}) [audit]"}


def test_server_count_below_licence_weak_host_listed_apart():
    v = _run("SERVER-COUNT", *sc_below())
    assert (v.status, v.reason) == (Status.PASS, "below_licence")
    assert v.evidence == _sc_evidence(SERVERS_5_6, licensed=3,
                                      uncertain=[_server(101, ["billing"], ["lab-billing-port"], 0.3)])
    assert (v.values["seen"], v.values["uncertain"]) == (2, 1)


def test_server_count_none_seen_cameras_and_clients_are_no_servers():
    v = _run("SERVER-COUNT", *sc_none_seen())
    assert (v.status, v.reason) == (Status.PASS, "none_seen")
    assert v.evidence == _sc_evidence([])


def test_server_count_over_licence_counts_a_match_at_exactly_the_threshold():
    v = _run("SERVER-COUNT", *sc_over())
    assert (v.status, v.reason) == (Status.FAIL, "over_licence")
    assert v.evidence == _sc_evidence(SERVERS_5_6 + [_server(9, ["database"], ["mysql"], 0.5)])
    assert v.values["seen"] == 3 and v.values["servers"].endswith(f"{ip(9)} ({mac(9)}) [database]")


def test_server_count_none_licensed():
    v = _run("SERVER-COUNT", *sc_none_licensed())
    assert (v.status, v.reason) == (Status.FAIL, "none_licensed")
    assert v.evidence == _sc_evidence([_server(5, ["billing"], ["lab-billing-alpha"])], licensed=0)


def test_server_count_weak_hosts_alone_over_the_licence_are_inconclusive():
    v = _run("SERVER-COUNT", *sc_unclear())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "unclear_over")
    assert v.evidence == _sc_evidence(SERVERS_5_6, uncertain=[_server(101, ["database"], ["mysql"], 0.49)])
    assert v.values["hosts"] == f"{ip(101)} ({mac(101)}) [database]" and v.values["min_confidence"] == 0.5


def test_server_count_summary_names_at_most_the_catalogue_limit():
    obs = _obs(extra=tuple(range(20, 27)), services=_scan(*(database(n) for n in range(20, 27))))
    v = _run("SERVER-COUNT", obs, _profile())
    assert v.reason == "over_licence" and len(v.evidence["servers"]) == 7
    assert v.values["servers"].endswith(" … (+2)") and v.values["servers"].count("[database]") == 5


# ---------------------------------------------------------------- DUAL-BILLING


def db_not_run():
    return _obs(), _profile()


def db_registered_only():
    generic = _m(5, "billing", "lab-billing-generic", 7004, confidence=0.8)  # names no product: joins alpha at .5
    return _obs(services=_scan(alpha(), generic, audit())), _profile()


def db_second_unregistered():
    return _obs(extra=(7,), services=_scan(alpha(), beta())), _profile()


def db_several_registered():
    return _obs(extra=(9,), services=_scan(alpha(), alpha(9))), \
        _profile(billing=((5, "labbill-alpha"), (9, "labbill-alpha")))


def db_not_registered():
    return _obs(extra=(7,), services=_scan(beta(), audit())), _profile()


def db_seen_none_registered():
    return _obs(services=_scan(alpha())), _profile(billing=())


def db_uncertain_extra():
    return _obs(extra=(7,), services=_scan(alpha(), port_only(7))), _profile()


def db_uncertain_only():
    return _obs(services=_scan(port_only(5))), _profile()


def db_registered_not_seen():
    return _obs(services=_scan(audit())), _profile()


def db_none_registered():
    return _obs(services=_scan(audit())), _profile(billing=())


def db_no_signature():
    return _obs(services=_scan(audit(), signatures=(*NOT_BILLING, *SHIPPED))), _profile(staged=NOT_BILLING)


def _bill(n: int, product: str | None, registered: bool, signatures: list[str], ports: list[int],
          confidence: float = 0.9) -> dict[str, Any]:
    return {"address": ip(n), "mac": mac(n), "product": product, "registered": registered, "signatures": signatures,
            "ports": ports, "confidence": confidence}


ALPHA_5 = _bill(5, "labbill-alpha", True, ["lab-billing-alpha"], [7001])


def _db_evidence(servers, uncertain=(), registered=((5, "labbill-alpha"),), matched=(), staged=BILLING_STAGED,
                 sha=SHA) -> dict[str, Any]:
    return {"billing_servers": servers, "uncertain": list(uncertain),
            "registered": [{"address": ip(n), "product": p} for n, p in registered],
            "billing_signatures": list(matched), "billing_signatures_staged": list(staged), "min_confidence": 0.5,
            "signatures_sha256": sha, "observations": ["services.matches", "services.signatures"]}


def test_dual_billing_not_run():
    v = _run("DUAL-BILLING", *db_not_run())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == _db_evidence([], staged=[], sha=None)


def test_dual_billing_registered_only_product_less_match_joins_the_named_one():
    v = _run("DUAL-BILLING", *db_registered_only())
    assert (v.status, v.reason) == (Status.PASS, "registered_only")
    assert v.evidence == _db_evidence(
        [_bill(5, "labbill-alpha", True, ["lab-billing-alpha", "lab-billing-generic"], [7001, 7004])],
        matched=["lab-billing-alpha", "lab-billing-generic"])
    assert v.values["servers"] == f"{ip(5)} ({mac(5)}) labbill-alpha"


def test_dual_billing_second_unregistered_billing_server():
    v = _run("DUAL-BILLING", *db_second_unregistered())
    assert (v.status, v.reason) == (Status.FAIL, "second_unregistered")
    assert v.evidence == _db_evidence(
        [ALPHA_5, _bill(7, "labbill-beta", False, ["lab-billing-beta"], [7002])],
        matched=["lab-billing-alpha", "lab-billing-beta"])
    assert (v.values["count"], v.values["unregistered_count"]) == (2, 1)
    assert v.values["unregistered"] == f"{ip(7)} ({mac(7)}) labbill-beta"


def test_dual_billing_two_registered_servers_are_still_two_billing_systems():
    v = _run("DUAL-BILLING", *db_several_registered())
    assert (v.status, v.reason) == (Status.FAIL, "several_registered")
    assert v.evidence == _db_evidence(
        [ALPHA_5, _bill(9, "labbill-alpha", True, ["lab-billing-alpha"], [7001])],
        registered=((5, "labbill-alpha"), (9, "labbill-alpha")), matched=["lab-billing-alpha"])


def test_dual_billing_not_the_registered_one():
    v = _run("DUAL-BILLING", *db_not_registered())
    assert (v.status, v.reason) == (Status.FAIL, "not_registered")
    assert v.evidence == _db_evidence([_bill(7, "labbill-beta", False, ["lab-billing-beta"], [7002])],
                                      matched=["lab-billing-beta"])
    assert v.values["registered"] == f"{ip(5)} labbill-alpha"


def test_dual_billing_seen_while_none_registered():
    v = _run("DUAL-BILLING", *db_seen_none_registered())
    assert (v.status, v.reason) == (Status.FAIL, "seen_none_registered")
    assert v.evidence == _db_evidence([{**ALPHA_5, "registered": False}], registered=(),
                                      matched=["lab-billing-alpha"])


def test_dual_billing_weak_second_server_is_inconclusive_not_a_failure():
    v = _run("DUAL-BILLING", *db_uncertain_extra())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "uncertain_extra")
    assert v.evidence == _db_evidence([ALPHA_5], uncertain=[_bill(7, None, False, ["lab-billing-port"], [7003], 0.3)],
                                      matched=["lab-billing-alpha", "lab-billing-port"])
    assert v.values["uncertain"] == f"{ip(7)} ({mac(7)}) [lab-billing-port]" and v.values["uncertain_count"] == 1


def test_dual_billing_only_weak_matches():
    v = _run("DUAL-BILLING", *db_uncertain_only())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "uncertain_only")
    # no product named: registered on its address alone
    assert v.evidence == _db_evidence([], uncertain=[_bill(5, None, True, ["lab-billing-port"], [7003], 0.3)],
                                      matched=["lab-billing-port"])


def test_dual_billing_registered_server_not_seen():
    v = _run("DUAL-BILLING", *db_registered_not_seen())
    assert (v.status, v.reason, v.values) == (Status.INCONCLUSIVE, "registered_not_seen",
                                              {"registered": f"{ip(5)} labbill-alpha"})
    assert v.evidence == _db_evidence([])


def test_dual_billing_none_registered_none_seen():
    v = _run("DUAL-BILLING", *db_none_registered())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "none_registered")
    assert v.evidence == _db_evidence([], registered=())


def test_dual_billing_no_billing_signature_in_effect():
    v = _run("DUAL-BILLING", *db_no_signature())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "no_signature")
    assert v.evidence == _db_evidence([], staged=[])
    # staged in the profile but not used by the scan (another profile's run): not in effect either
    obs = _obs(services=_scan(audit(), signatures=(*NOT_BILLING, *SHIPPED)))
    assert _run("DUAL-BILLING", obs, _profile()).reason == "no_signature"


def test_dual_billing_product_keys_compare_case_insensitively():
    v = _run("DUAL-BILLING", _obs(services=_scan(alpha())), _profile(billing=((5, "LabBill-Alpha"),)))
    assert (v.status, v.reason) == (Status.PASS, "registered_only")
    assert v.evidence["billing_servers"] == [ALPHA_5]


def test_dual_billing_product_less_match_elsewhere_is_unregistered():
    generic = _m(7, "billing", "lab-billing-generic", 7004, confidence=0.8)
    v = _run("DUAL-BILLING", _obs(extra=(7,), services=_scan(alpha(), generic)), _profile())
    assert (v.status, v.reason) == (Status.FAIL, "second_unregistered")
    assert v.evidence["billing_servers"][1] == _bill(7, None, False, ["lab-billing-generic"], [7004], 0.8)
    assert v.values["unregistered"] == f"{ip(7)} ({mac(7)}) [lab-billing-generic]"


# ---------------------------------------------------------------- AUDIT-SYSTEM


def au_all_up():
    return _obs(services=_scan(alpha(), audit())), _profile()


def au_all_up_unregistered():
    return _obs(extra=(9,), services=_scan(audit(), audit(6, "other-audit"), audit(9))), _profile()


def au_down():
    # .16 is registered but not even on the LAN; .6 answers as another product only
    return _obs(services=_scan(audit(6, "other-audit"))), _profile(audit=((6, "labaudit"), (16, "labaudit")))


def au_none_registered():
    return _obs(), _profile(audit=())


def au_none_registered_seen():
    return _obs(services=_scan(audit())), _profile(audit=())


def au_no_signature():
    staged = [s for s in STAGED if not s.startswith("lab-audit")]
    return _obs(services=_scan(alpha(), signatures=(*staged, *SHIPPED))), _profile(staged=staged)


def au_not_run():
    return _obs(), _profile()


def _audit_row(n: int, up: bool | None, live: bool = True, signatures=(), ports=(), confidence=None,
               product: str = "labaudit") -> dict[str, Any]:
    return {"address": ip(n), "product": product, "up": up, "live": live, "mac": mac(n) if live or up else None,
            "signatures": list(signatures), "ports": list(ports), "confidence": confidence}


UP_6 = _audit_row(6, True, signatures=["lab-audit"], ports=[7101], confidence=0.9)


def _au_evidence(servers, registered=((6, "labaudit"),), unregistered=(), matched=(), staged=("lab-audit",
                 "lab-audit-port"), sha=SHA) -> dict[str, Any]:
    return {"servers": servers, "registered": [{"address": ip(n), "product": p} for n, p in registered],
            "unregistered": list(unregistered), "audit_signatures": list(matched), "audit_signatures_staged": list(staged),
            "signatures_sha256": sha, "observations": ["services.matches", "arp.hosts"]}


def test_audit_system_all_up():
    v = _run("AUDIT-SYSTEM", *au_all_up())
    assert (v.status, v.reason) == (Status.PASS, "all_up")
    assert v.evidence == _au_evidence([UP_6], matched=["lab-audit"])
    assert (v.values["total"], v.values["servers"]) == (1, f"{ip(6)} labaudit")


def test_audit_system_unregistered_audit_services_are_noted():
    v = _run("AUDIT-SYSTEM", *au_all_up_unregistered())
    assert (v.status, v.reason) == (Status.PASS, "all_up_unregistered")
    assert v.evidence == _au_evidence([UP_6], matched=["lab-audit"], unregistered=[
        {"address": ip(6), "mac": mac(6), "product": "other-audit", "signatures": ["lab-audit"]},
        {"address": ip(9), "mac": mac(9), "product": "labaudit", "signatures": ["lab-audit"]}])
    assert v.values["unregistered"] == f"{ip(6)} ({mac(6)}) other-audit, {ip(9)} ({mac(9)}) labaudit"


def test_audit_system_down_and_off_the_lan():
    v = _run("AUDIT-SYSTEM", *au_down())
    assert (v.status, v.reason) == (Status.FAIL, "down")
    assert v.evidence == _au_evidence(
        [_audit_row(6, False), _audit_row(16, False, live=False)], registered=((6, "labaudit"), (16, "labaudit")),
        matched=["lab-audit"],
        unregistered=[{"address": ip(6), "mac": mac(6), "product": "other-audit", "signatures": ["lab-audit"]}])
    assert (v.values["count"], v.values["total"], v.values["offline"]) == (2, 2, 1)
    assert v.values["down"] == f"{ip(6)} labaudit, {ip(16)} labaudit"


def test_audit_system_one_of_two_down_and_a_product_less_signature_counts_as_up():
    weak = _m(6, "audit", "lab-audit-port", 7102, confidence=0.3)
    v = _run("AUDIT-SYSTEM", _obs(services=_scan(weak)), _profile(audit=((6, "labaudit"), (16, "labaudit"))))
    assert (v.status, v.reason) == (Status.FAIL, "down")
    assert v.evidence["servers"] == [_audit_row(6, True, signatures=["lab-audit-port"], ports=[7102], confidence=0.3),
                                     _audit_row(16, False, live=False)]
    assert (v.values["count"], v.values["offline"], v.values["down"]) == (1, 1, f"{ip(16)} labaudit")


def test_audit_system_none_registered_fails_even_without_a_scan():
    v = _run("AUDIT-SYSTEM", *au_none_registered())
    assert (v.status, v.reason) == (Status.FAIL, "none_registered")
    assert v.evidence == _au_evidence([], registered=(), staged=(), sha=None)
    v = _run("AUDIT-SYSTEM", _obs(services=_scan(alpha())), _profile(audit=()))
    assert (v.status, v.reason) == (Status.FAIL, "none_registered")


def test_audit_system_none_registered_but_audit_service_seen():
    v = _run("AUDIT-SYSTEM", *au_none_registered_seen())
    assert (v.status, v.reason) == (Status.FAIL, "none_registered_seen")
    assert v.evidence == _au_evidence([], registered=(), matched=["lab-audit"], unregistered=[
        {"address": ip(6), "mac": mac(6), "product": "labaudit", "signatures": ["lab-audit"]}])
    assert v.values["unregistered_count"] == 1


def test_audit_system_silent_without_any_audit_signature_is_inconclusive():
    v = _run("AUDIT-SYSTEM", *au_no_signature())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "no_signature")
    assert v.evidence == _au_evidence([_audit_row(6, False)], staged=())
    assert v.values["down"] == f"{ip(6)} labaudit"


def test_audit_system_not_run_lists_the_registered_servers_unjudged():
    v = _run("AUDIT-SYSTEM", *au_not_run())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == _au_evidence([_audit_row(6, None)], staged=(), sha=None)


# ------------------------------------------------------------- REALNAME-CLIENT

TERMINALS = range(101, 121)


def rn_all_present():
    # a weak match is presence enough; the client on the audit server is no terminal's
    matches = [realname(n) for n in TERMINALS if n != 120] + [realname(120, confidence=0.2), realname(6)]
    return _obs(services=_scan(*matches)), _profile()


def rn_within():
    return _obs(services=_scan(*(realname(n) for n in TERMINALS if n != 101))), _profile()


def rn_over():
    return _obs(services=_scan(*(realname(n) for n in TERMINALS if n not in (101, 117)))), _profile()


def rn_none_answered():
    return _obs(services=_scan(alpha(), audit())), _profile()


def rn_no_signature():
    staged = [s for s in STAGED if s != "lab-realname"]
    return _obs(services=_scan(alpha(), signatures=(*staged, *SHIPPED))), _profile(staged=staged)


def rn_no_terminals():
    return _obs(terminals=0, services=_scan(alpha(), realname(6))), _profile()


def rn_not_run():
    return _obs(), _profile()


def _rn_evidence(missing=(), live=20, ratio=0.0, matched=("lab-realname",), staged=("lab-realname",),
                 sha=SHA) -> dict[str, Any]:
    return {"live_terminals": live, "missing": [ip(n) for n in missing],
            "missing_hosts": [{"address": ip(n), "mac": mac(n), "name": f"WB-{n - 100}"} for n in missing],
            "ratio": ratio, "max_missing_share": 0.05, "realname_signatures": list(matched),
            "realname_signatures_staged": list(staged), "signatures_sha256": sha,
            "observations": ["services.matches", "arp.hosts"]}


def test_realname_client_all_present():
    v = _run("REALNAME-CLIENT", *rn_all_present())
    assert (v.status, v.reason) == (Status.PASS, "all_present")
    assert v.evidence == _rn_evidence()
    assert v.values == {"live": 20, "count": 0, "answered": 20, "ratio_pct": "0.0", "max_pct": "5"}


def test_realname_client_exactly_the_threshold_passes():
    v = _run("REALNAME-CLIENT", *rn_within())
    assert (v.status, v.reason) == (Status.PASS, "within_threshold")
    assert v.evidence == _rn_evidence(missing=[101], ratio=0.05)
    assert (v.values["count"], v.values["ratio_pct"]) == (1, "5.0")


def test_realname_client_over_the_threshold_names_the_terminals():
    v = _run("REALNAME-CLIENT", *rn_over())
    assert (v.status, v.reason) == (Status.FAIL, "over_threshold")
    assert v.evidence == _rn_evidence(missing=[101, 117], ratio=0.1)
    assert v.values == {"live": 20, "count": 2, "answered": 18, "ratio_pct": "10.0", "max_pct": "5"}


def test_realname_client_none_answered_is_never_a_total_failure():
    v = _run("REALNAME-CLIENT", *rn_none_answered())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "none_answered")
    assert v.evidence == _rn_evidence(missing=TERMINALS, ratio=1.0, matched=())


def test_realname_client_no_signature_in_effect():
    v = _run("REALNAME-CLIENT", *rn_no_signature())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "no_signature")
    assert v.evidence == _rn_evidence(missing=TERMINALS, ratio=1.0, matched=(), staged=())


def test_realname_client_no_terminals():
    v = _run("REALNAME-CLIENT", *rn_no_terminals())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "no_terminals")
    assert v.evidence == _rn_evidence(live=0, ratio=None)


def test_realname_client_not_run():
    v = _run("REALNAME-CLIENT", *rn_not_run())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    assert v.evidence == _rn_evidence(ratio=None, matched=(), staged=(), sha=None)


# ---------------------------------------------------------------- VIDEO-SYSTEM


def _survey(*cameras: Camera, problems=()) -> CameraSurvey:
    return CameraSurvey(probes_sent=3, rtsp_checked=len(cameras), cameras=list(cameras), problems=list(problems),
                        seconds=3.0)


CAM_31 = Camera(address=A(ip(31)), mac=mac(31), how=["ws-discovery", "rtsp"], rtsp_status=200,
                types=["dn:NetworkVideoTransmitter"])
CAM_32 = Camera(address=A(ip(32)), how=["sadp"], model="DS-2CD2T47G2-L")          # MAC from the sweep
NVR_8 = Camera(address=A(ip(8)), mac=mac(8), how=["dhip"], rtsp_status=401, model="DHI-NVR4104")
VIDEO_HOSTS = (8, 31, 32, 33)
BAD_XML = CameraProblem(address=A(ip(40)), how="ws-discovery", error="not well-formed XML")


def vi_as_registered():
    obs = _obs(extra=VIDEO_HOSTS, cameras=_survey(CAM_31, CAM_32, NVR_8, problems=[BAD_XML]),
               services=_scan(nvr(8), camera(33), alpha()))
    return obs, _profile(cameras=3, nvrs=1)


def vi_fewer_cameras():
    return vi_as_registered()[0], _profile(cameras=4, nvrs=1)


def vi_fewer_nvrs():
    return vi_as_registered()[0], _profile(cameras=3, nvrs=2)


def vi_fewer_both():
    return vi_as_registered()[0], _profile(cameras=4, nvrs=2)


def vi_nvrs_unknown():
    return _obs(extra=VIDEO_HOSTS, cameras=_survey(CAM_31, CAM_32, NVR_8)), _profile(cameras=2, nvrs=1)


def vi_none_registered():
    return _obs(cameras=_survey(), services=_scan(alpha())), _profile()


def vi_not_run():
    return _obs(services=_scan(nvr(8))), _profile(cameras=2)


def _device(n: int, how: list[str], rtsp_status=None, model=None, signatures=()) -> dict[str, Any]:
    return {"address": ip(n), "mac": mac(n), "how": how, "rtsp_status": rtsp_status, "model": model,
            "signatures": list(signatures)}


ROW_31 = _device(31, ["ws-discovery", "rtsp"], 200)
ROW_32 = _device(32, ["sadp"], model="DS-2CD2T47G2-L")
ROW_33 = _device(33, ["service-scan"], signatures=["rtsp-generic"])
ROW_8 = _device(8, ["dhip", "service-scan"], 401, "DHI-NVR4104", ["lab-nvr"])


def _vi_evidence(cameras, nvrs, registered, nvrs_registered, scanned=True, problems=()) -> dict[str, Any]:
    return {"cameras": cameras, "registered": registered, "nvrs": nvrs, "nvrs_registered": nvrs_registered,
            "services_scanned": scanned, "problems": list(problems), "observations": ["cameras", "services.matches"]}


PROBLEM = {"address": ip(40), "how": "ws-discovery", "error": "not well-formed XML"}


def test_video_system_as_registered_nvr_told_apart_by_its_service():
    v = _run("VIDEO-SYSTEM", *vi_as_registered())
    assert (v.status, v.reason) == (Status.PASS, "as_registered")
    assert v.evidence == _vi_evidence([ROW_31, ROW_32, ROW_33], [ROW_8], 3, 1, problems=[PROBLEM])
    assert v.values == {"cameras": 3, "registered": 3, "nvrs": 1, "nvrs_registered": 1}


@pytest.mark.parametrize("case, reason", [(lambda: vi_fewer_cameras(), "fewer_cameras"),
                                          (lambda: vi_fewer_nvrs(), "fewer_nvrs"),
                                          (lambda: vi_fewer_both(), "fewer_both")])
def test_video_system_fewer_than_registered(case, reason):
    obs, profile = case()
    v = _run("VIDEO-SYSTEM", obs, profile)
    assert (v.status, v.reason) == (Status.FAIL, reason)
    assert v.evidence == _vi_evidence([ROW_31, ROW_32, ROW_33], [ROW_8], profile.servers.cameras,
                                      profile.servers.nvrs, problems=[PROBLEM])


def test_video_system_without_the_service_scan_nvrs_are_unknown():
    v = _run("VIDEO-SYSTEM", *vi_nvrs_unknown())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "nvrs_unknown")
    assert v.evidence == _vi_evidence([_device(8, ["dhip"], 401, "DHI-NVR4104"), ROW_31, ROW_32], [], 2, 1,
                                      scanned=False)


def test_video_system_without_the_service_scan_too_few_devices_still_fail():
    obs = _obs(extra=VIDEO_HOSTS, cameras=_survey(CAM_31))
    v = _run("VIDEO-SYSTEM", obs, _profile(cameras=2, nvrs=1))
    assert (v.status, v.reason) == (Status.FAIL, "fewer_cameras")
    assert v.values == {"cameras": 1, "registered": 2, "nvrs": 0, "nvrs_registered": 1}


def test_video_system_more_than_registered_passes():
    obs = _obs(extra=VIDEO_HOSTS, cameras=_survey(CAM_31, CAM_32), services=_scan(alpha()))
    v = _run("VIDEO-SYSTEM", obs, _profile())
    assert (v.status, v.reason) == (Status.PASS, "as_registered")
    assert v.evidence == _vi_evidence([ROW_31, ROW_32], [], 0, 0)


def test_video_system_nothing_registered_nothing_seen_is_not_applicable():
    v = _run("VIDEO-SYSTEM", *vi_none_registered())
    assert (v.status, v.reason) == (Status.NOT_APPLICABLE, "none_registered")
    assert v.evidence == _vi_evidence([], [], 0, 0)


def test_video_system_not_run():
    v = _run("VIDEO-SYSTEM", *vi_not_run())
    assert (v.status, v.reason) == (Status.INCONCLUSIVE, "not_run")
    # the service scan's NVR is listed, but without the survey nothing is judged
    assert v.evidence == _vi_evidence([], [_device(8, ["service-scan"], signatures=["lab-nvr"])], 2, 0)


# ------------------------------------------------------ every reason, evaluated

CASES: dict[tuple[str, str], Callable[[], tuple[Observations, VenueProfile]]] = {
    ("SERVER-COUNT", "not_run"): sc_not_run, ("SERVER-COUNT", "within_licence"): sc_within,
    ("SERVER-COUNT", "below_licence"): sc_below, ("SERVER-COUNT", "none_seen"): sc_none_seen,
    ("SERVER-COUNT", "over_licence"): sc_over, ("SERVER-COUNT", "none_licensed"): sc_none_licensed,
    ("SERVER-COUNT", "unclear_over"): sc_unclear,
    ("DUAL-BILLING", "not_run"): db_not_run, ("DUAL-BILLING", "registered_only"): db_registered_only,
    ("DUAL-BILLING", "second_unregistered"): db_second_unregistered,
    ("DUAL-BILLING", "several_registered"): db_several_registered,
    ("DUAL-BILLING", "not_registered"): db_not_registered,
    ("DUAL-BILLING", "seen_none_registered"): db_seen_none_registered,
    ("DUAL-BILLING", "uncertain_extra"): db_uncertain_extra, ("DUAL-BILLING", "uncertain_only"): db_uncertain_only,
    ("DUAL-BILLING", "registered_not_seen"): db_registered_not_seen,
    ("DUAL-BILLING", "none_registered"): db_none_registered, ("DUAL-BILLING", "no_signature"): db_no_signature,
    ("AUDIT-SYSTEM", "all_up"): au_all_up, ("AUDIT-SYSTEM", "all_up_unregistered"): au_all_up_unregistered,
    ("AUDIT-SYSTEM", "down"): au_down, ("AUDIT-SYSTEM", "none_registered"): au_none_registered,
    ("AUDIT-SYSTEM", "none_registered_seen"): au_none_registered_seen,
    ("AUDIT-SYSTEM", "no_signature"): au_no_signature, ("AUDIT-SYSTEM", "not_run"): au_not_run,
    ("REALNAME-CLIENT", "all_present"): rn_all_present, ("REALNAME-CLIENT", "within_threshold"): rn_within,
    ("REALNAME-CLIENT", "over_threshold"): rn_over, ("REALNAME-CLIENT", "none_answered"): rn_none_answered,
    ("REALNAME-CLIENT", "no_signature"): rn_no_signature, ("REALNAME-CLIENT", "no_terminals"): rn_no_terminals,
    ("REALNAME-CLIENT", "not_run"): rn_not_run,
    ("VIDEO-SYSTEM", "as_registered"): vi_as_registered, ("VIDEO-SYSTEM", "fewer_cameras"): vi_fewer_cameras,
    ("VIDEO-SYSTEM", "fewer_nvrs"): vi_fewer_nvrs, ("VIDEO-SYSTEM", "fewer_both"): vi_fewer_both,
    ("VIDEO-SYSTEM", "nvrs_unknown"): vi_nvrs_unknown, ("VIDEO-SYSTEM", "none_registered"): vi_none_registered,
    ("VIDEO-SYSTEM", "not_run"): vi_not_run,
}

# The checks' own reasons; INTERRUPTED is evaluate's for every check (tests/test_run_interrupt.py).
CATALOGUE_REASONS = sorted((c, r) for c in FIVE for r in load_ruleset().checks[c].messages if r != INTERRUPTED)


def test_every_catalogued_reason_has_a_case_and_no_case_is_stale():
    assert sorted(CASES) == CATALOGUE_REASONS


@pytest.mark.parametrize("check_id, reason", CATALOGUE_REASONS)
def test_every_reason_round_trips_through_evaluate(check_id, reason):
    obs, profile = CASES[(check_id, reason)]()
    v = _run(check_id, obs, profile)
    assert v.reason == reason
    assert v.status == load_ruleset().checks[check_id].messages[reason].status
    _assert_reported(check_id, obs, profile, v)
