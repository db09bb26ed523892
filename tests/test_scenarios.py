"""Shipped scenarios: valid, their profiles load, and their truth is what the issue asks."""

from __future__ import annotations

import os
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from lab.logs import LogsError, generate, tree_digest
from lab.scenario import (LAB_SECRETS, SSH_WRONG_PASSWORD, ScenarioError, TerminalOverride, load_scenario, new_ssh_key,
                          scenario_names, ssh_secret_names, stage_profile)
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


def test_logs_scenario_shape(tmp_path):
    """Issue 6: a log server with the five kinds of folder, a mismatching one, and the profile's bad sources."""
    sc = load_scenario("logs")
    assert 5 <= len([t for t in sc.build_terminals() if t.power == "on"]) <= 15
    first, second = sc.log_servers
    assert (first.host_key, second.host_key) == ("match", "mismatch")
    assert first.users.password and first.users.key
    folders = {f.path: f for f in first.folders}
    dated = [f for f in first.folders if f.name_pattern and not f.recursive_subdirs and f.count is None]
    assert any(f.days_back >= 200 and len(f.missing) == 2 for f in dated)
    assert any(f.days_back < 180 and not f.missing for f in dated)
    assert any(f.undated for f in first.folders) and any(f.recursive_subdirs for f in first.folders)
    assert [f.count for f in first.folders if f.count] == [20000]
    host_keys = {1: new_ssh_key()[1], 2: new_ssh_key()[1]}
    staged, values = stage_profile(sc, tmp_path, host_keys)
    sources = load_profile(staged).servers.log_sources
    by_addr = {}
    for s in sources:
        by_addr.setdefault(str(s.address), []).append(s)
    # The first server's sources pin its own key; the second's pins another; the router's pins nothing.
    assert {s.host_key for s in by_addr[str(first.address)]} == {host_keys[1]}
    assert by_addr[str(second.address)][0].host_key not in (None, host_keys[2])
    assert by_addr[str(sc.lan.router)][0].host_key is None
    named = {p.path for s in by_addr[str(first.address)] for p in s.paths}
    assert set(folders) < named and len(named - set(folders)) == 1  # one folder the server does not have
    wrong = [s for s in sources if s.password_file and s.password_file.name == SSH_WRONG_PASSWORD]
    assert len(wrong) == 1 and str(wrong[0].address) == str(first.address)
    assert any(s.key_file for s in by_addr[str(first.address)])
    for s in sources:
        secret = s.password_file or s.key_file
        assert secret.stat().st_mode & 0o777 == 0o600 and secret.parent == tmp_path / "secrets"
    assert values[SSH_WRONG_PASSWORD] not in {values[n] for n in ssh_secret_names(sc) if n.endswith(".pass")
                                                   and n != SSH_WRONG_PASSWORD}
    key_user = f"ssh1-{first.users.key}"
    assert values[f"{key_user}.pub"].startswith("ssh-ed25519 ")
    assert (tmp_path / "secrets" / f"{key_user}.key").read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY")


def test_log_folders_generate_their_truth(tmp_path):
    """lab/logs.py writes exactly the days of the spec, names them by the pattern, and dates each mtime."""
    today = date(2026, 3, 1)
    spec = {"folders": [
        {"path": "/var/log/billing", "name_pattern": "billing-%Y%m%d.log", "days_back": 10,
         "missing": [[2, 3], [7, 7]]},
        {"path": "/logs/rot", "undated": True, "base_name": "s.log", "days_back": 9, "days_per_file": 3,
         "missing": [[4, 4]], "line_format": "%Y-%m-%d %H:%M:%S"},
        {"path": "/logs/month", "name_pattern": "%Y%m%d.log", "days_back": 3, "recursive_subdirs": True},
        {"path": "/logs/many", "name_pattern": "t-%Y%m%d-%H%M%S.log", "days_back": 3, "count": 31},
    ]}
    truth = generate(tmp_path, spec, today)
    billing, rot, month, many = truth["folders"]
    assert truth["today"] == "2026-03-01"
    assert (billing["oldest"], billing["newest"], billing["files"]) == ("2026-02-20", "2026-03-01", 7)
    assert billing["gaps"] == [["2026-02-22", "2026-02-22"], ["2026-02-26", "2026-02-27"]]
    names = sorted(p.name for p in (tmp_path / "var/log/billing").iterdir())
    assert names[0] == "billing-20260220.log" and "billing-20260222.log" not in names
    one = tmp_path / "var/log/billing/billing-20260220.log"
    mtime = datetime.fromtimestamp(one.stat().st_mtime, ZoneInfo("Asia/Shanghai"))
    assert mtime.date() == date(2026, 2, 20) and one.read_text().startswith("2026-02-20 ")
    # Undated: each rotated file holds one run of days, its first and last lines bound it.
    assert rot["gaps"] == [["2026-02-25", "2026-02-25"]] and rot["dated_by"] == "content"
    files = {p.name: p.read_text().splitlines() for p in (tmp_path / "logs/rot").iterdir()}
    assert set(files) == {"s.log", "s.log.1", "s.log.2", "s.log.3"}
    bounds = sorted((lines[0][:10], lines[-1][:10]) for lines in files.values())
    assert bounds == [("2026-02-21", "2026-02-23"), ("2026-02-24", "2026-02-24"),
                      ("2026-02-26", "2026-02-28"), ("2026-03-01", "2026-03-01")]
    assert sorted(p.name for p in (tmp_path / "logs/month").iterdir()) == ["2026-02", "2026-03"]
    assert month["files"] == 3 and month["recursive"] is True
    assert many["files"] == 31 == len(list((tmp_path / "logs/many").iterdir()))
    digest = tree_digest(tmp_path)
    assert tree_digest(tmp_path) == digest
    os.utime(one, (one.stat().st_atime, one.stat().st_mtime + 1))
    assert tree_digest(tmp_path) != digest


def test_log_folder_specs_are_checked(tmp_path):
    with pytest.raises(LogsError, match="two files the name"):
        generate(tmp_path, {"folders": [{"path": "/a", "name_pattern": "a-%Y%m%d.log", "days_back": 2,
                                         "files_per_day": 2}]}, date(2026, 1, 5))
    base = load_scenario("logs").source.read_text()
    for bad, message in [
        (base.replace("{path: /var/log/jifei, name_pattern", "{path: var/log/jifei, name_pattern"), "absolute"),
        (base.replace("undated: true, base_name", "undated: true, name_pattern: 'x-%Y.log', base_name"),
         "not both"),
        (base.replace("address: 198.18.60.12", "address: 198.18.61.12"), r"log_servers\[1\].address .* outside"),
        (base.replace("host_key: mismatch", "host_key: other"), "host_key"),
        (base.replace("{path: /srv/billing/archive,", "{path: /var/log/billing/old,"), "or holds, another folder"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(bad)
        with pytest.raises(ScenarioError, match=message):
            load_scenario(path)
