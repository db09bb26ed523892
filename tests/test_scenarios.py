"""Shipped scenarios: valid, their profiles load, and their truth is what the issue asks."""

from __future__ import annotations

import pytest

from lab.scenario import LAB_SECRETS, ScenarioError, TerminalOverride, load_scenario, scenario_names, stage_profile
from lab.services import BILLING_PRODUCTS, PRODUCTS
from probe.profile import load_profile


def test_shipped_scenarios():
    assert {"small", "messy", "big", "rogue", "uplinks", "services"} <= set(scenario_names())


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


def _staged(name: str, tmp_path):
    sc = load_scenario(name)
    staged, _ = stage_profile(sc, tmp_path)
    return sc, load_profile(staged)


def test_services_scenario_shape(tmp_path):
    """Issue 5: a second billing server, the audit service stopped, clients missing, cameras short."""
    sc, profile = _staged("services", tmp_path)
    servers = profile.servers
    live = [t for t in sc.build_terminals() if t.power == "on"]
    assert 30 <= len(live) <= 50
    missing = [t for t in live if not t.realname]
    assert len(missing) / len(live) > 0.05 and len(missing) == 3
    registered = {(s.address, s.product) for s in servers.billing}
    keys = {"alpha": BILLING_PRODUCTS["alpha"].key, "beta": BILLING_PRODUCTS["beta"].key}
    billing = {(b.address, keys[b.product]) for b in sc.billing if b.running}
    assert len(billing) == 2 and len(billing & registered) == 1
    assert [a.running for a in sc.audit] == [False] and {a.address for a in sc.audit} == {
        s.address for s in servers.audit}
    cameras = [c for c in sc.cameras if c.kind == "camera"]
    nvrs = [c for c in sc.cameras if c.kind == "nvr"]
    assert len(cameras) < servers.cameras and len(nvrs) == servers.nvrs
    assert any(c.vendor == "hikvision" and not c.onvif for c in cameras)
    assert {c.vendor for c in cameras} == {"generic", "hikvision", "dahua"}
    assert profile.venue.licensed_servers < len(billing) + len(nvrs)
    assert any(not t.firewall for t in live) and sum(t.firewall for t in live) > len(live) // 2


def test_small_stays_clean_with_services(tmp_path):
    sc, profile = _staged("small", tmp_path)
    servers = profile.servers
    assert all(t.realname and t.firewall for t in sc.build_terminals())
    assert [(b.address, BILLING_PRODUCTS[b.product].key) for b in sc.billing if b.running] == [
        (s.address, s.product) for s in servers.billing]
    assert [(a.address, a.running) for a in sc.audit] == [(s.address, True) for s in servers.audit]
    assert sum(c.kind == "camera" for c in sc.cameras) == servers.cameras
    assert sum(c.kind == "nvr" for c in sc.cameras) == servers.nvrs
    assert profile.venue.licensed_servers == len(sc.billing) + len(sc.audit) + servers.nvrs


@pytest.mark.parametrize("name", ["small", "services"])
def test_venue_signatures_recognise_the_lab_products(name, tmp_path):
    """The profile's staged signatures match what lab/services.py answers, and nothing else of it."""
    _, profile = _staged(name, tmp_path)
    sigs = {s.product: s for s in profile.servers.signatures if s.product}
    registered = {s.product for s in profile.servers.billing + profile.servers.audit}
    assert registered <= set(sigs) and set(sigs) <= set(PRODUCTS)
    answers = {key: _answer(product, sigs[key].payload) for key, product in PRODUCTS.items()}
    for key, sig in sigs.items():
        product = PRODUCTS[key]
        assert sig.ports == [product.port] and sig.role == product.role and sig.confirmed is False
        assert sig.source == "lab/services.py (fictional lab product)" and "(fictional)" in sig.name
        assert [other for other, answer in answers.items() if sig.matches(answer)] == [key]
    nvr = [s for s in profile.servers.signatures if s.role == "nvr"]
    assert len(nvr) == 1 and nvr[0].transport == "udp"


def _answer(product, payload: bytes | None) -> bytes:
    """What a product's server sends to a client that sends ``payload`` (if anything) after connecting."""
    greeting = product.greeting("WB001") or b""
    responder = product.responder()
    if responder is None or payload is None:
        return greeting
    reply = responder(payload)
    return greeting + (reply.data or b"" if reply else b"")


def test_lab_products_refuse_what_is_not_their_request():
    beta, audit = PRODUCTS["labbill-beta"].responder(), PRODUCTS["labaudit"].responder()
    assert beta(b"LBB") is None  # a prefix of the hello: wait for more
    assert beta(b"GET / HTTP/1.0\r\n\r\n").data is None
    assert audit(b"LABAUDIT STA") is None
    assert audit(b"HELP\r\n").data.startswith(b"LABAUDIT ERR") and audit(b"x" * 300).data is not None
    assert audit(b"LABAUDIT STATUS\r\nmore").used == len(b"LABAUDIT STATUS\r\n")


def test_service_addresses_are_checked(tmp_path):
    base = load_scenario("services").source.read_text()
    beta = "- {address: 198.18.40.66, product: beta}"
    for bad, message, at_build in [
        (base.replace(beta, beta.replace("40.66", "41.66")), r"billing\[1\].address .* outside lan.subnet", False),
        (base.replace("vendor: dahua}", "vendor: sony}"), r"cameras\.3\.vendor", False),
        # loads, but the server sits on machine 5's address, or where the DHCP server leases
        (base.replace(beta, beta.replace("40.66", "40.105")), "machine 5: .* already used by billing", True),
        (base.replace(beta, beta.replace("40.66", "40.210")), r"billing\[1\]: .* inside lan.dhcp_range", True),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(bad)
        with pytest.raises(ScenarioError, match=message):
            load_scenario(path).build_terminals() if at_build else load_scenario(path)


def test_realname_and_firewall_overrides():
    sc = load_scenario("services")
    by_number = {t.number: t for t in sc.build_terminals()}
    chosen = {n for n, t in by_number.items() if not t.realname}
    sc.terminals.overrides.append(TerminalOverride(number=min(chosen), realname=True, firewall=False))
    again = {t.number: t for t in sc.build_terminals()}
    assert {n for n, t in again.items() if not t.realname} == chosen - {min(chosen)}
    assert again[min(chosen)].firewall is False
    sc.terminals.firewall = False
    assert not any(t.firewall for t in sc.build_terminals())
