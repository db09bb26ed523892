"""Venue profile: the binding keys load, every kind of mistake is named, and
no input whatever escapes as anything but ProfileError.

The valid profile below follows DESIGN.md §6 key for key; expected values are
written out by hand, not derived from the code under test.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import pickle
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.profile import (
    ProfileError,
    VenueProfile,
    load_profile,
    normalise_mac,
    parse_profile,
    profile_sha256,
)

SECRET_TEXT = "s3cr3t-DO-NOT-PRINT"

# A real-format ed25519 public key blob: string "ssh-ed25519", then 32 key bytes.
HOST_KEY_B64 = base64.b64encode(
    struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
).decode()
HOST_KEY = f"ssh-ed25519 {HOST_KEY_B64}"

# 91350105MA2Y0XXXX + check character "L" (GB 32100-2015 weights, by hand in
# the stdnum doctest style: the same body with any other last char is a
# checksum-only mismatch).
GOOD_CODE = "91350105MA2Y0XXXXL"
WRONG_CHECK_CODE = "91350105MA2Y0XXXXX"

SECRET_NAMES = ("log5.pass", "log6.key", "snmp.community", "v3.auth", "v3.priv")


def valid_dict() -> dict[str, Any]:
    """A full profile using every binding key (fresh copy each call)."""
    return copy.deepcopy(
        {
            "venue": {
                "id": "FZ-MW-0042",
                "name": "星际网咖",
                "credit_code": GOOD_CODE,
                "address": "福州市马尾区某路 1 号",
                "licensed_terminals": 120,
                "licensed_servers": 2,
            },
            "network": {
                "subnets": ["198.18.10.0/24"],
                "probe_address": "198.18.10.250/24",
                "gateways": ["198.18.10.1"],
                "dhcp_servers": ["198.18.10.1"],
                "external_target": "203.0.113.80",
            },
            "terminals": {
                "hostname_pattern": r"^WB-(?P<number>\d+)$",
                "first_address": "198.18.10.101",
                "mac_table": {"02:00:00:00:00:01": 1, "02-00-00-00-00-02": 2},
            },
            "servers": {
                "billing": [{"address": "198.18.10.5", "product": "pubwin"}],
                "audit": [{"address": "198.18.10.6", "product": "generic-audit"}],
                "cameras": 4,
                "log_sources": [
                    {
                        "address": "198.18.10.5",
                        "port": 22,
                        "username": "auditor",
                        "password_file": "secrets/log5.pass",
                        "host_key": HOST_KEY,
                        "paths": [
                            {"path": "/var/log/billing", "name_pattern": "billing-%Y%m%d.log"}
                        ],
                    },
                    {
                        "address": "198.18.10.6",
                        "port": 2222,
                        "username": "reader",
                        "key_file": "secrets/log6.key",
                        "paths": [{"path": "/srv/audit", "recursive": True}],
                    },
                ],
                "snmp": [
                    {
                        "address": "198.18.10.1",
                        "community_file": "secrets/snmp.community",
                        "role": "router",
                    },
                    {
                        "address": "198.18.10.2",
                        "v3": {
                            "user": "probe",
                            "auth_key_file": "secrets/v3.auth",
                            "priv_key_file": "secrets/v3.priv",
                            "auth_protocol": "SHA-256",
                            "priv_protocol": "AES",
                        },
                        "role": "switch",
                    },
                ],
            },
        }
    )


def make_secrets(base: Path, mode: int = 0o600) -> None:
    (base / "secrets").mkdir(exist_ok=True)
    for name in SECRET_NAMES:
        path = base / "secrets" / name
        path.write_text(SECRET_TEXT)
        path.chmod(mode)


def write_profile(base: Path, data: dict[str, Any], name: str = "venue.yaml") -> Path:
    path = base / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    make_secrets(tmp_path)
    return tmp_path


def problems_of(base: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(write_profile(base, data))
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def one_line_starting(problems: list[str], prefix: str) -> str:
    hits = [p for p in problems if p.startswith(prefix)]
    assert hits, f"no problem starts with {prefix!r}: {problems}"
    return hits[0]


# --------------------------------------------------------------------------
# The valid profile


def test_full_profile_loads_and_every_binding_key_round_trips(staged: Path) -> None:
    profile = load_profile(write_profile(staged, valid_dict()))

    assert profile.warnings == []
    v = profile.venue
    assert (v.id, v.name, v.credit_code) == ("FZ-MW-0042", "星际网咖", GOOD_CODE)
    assert v.address == "福州市马尾区某路 1 号"
    assert (v.licensed_terminals, v.licensed_servers) == (120, 2)

    n = profile.network
    assert n.subnets == [IPv4Network("198.18.10.0/24")]
    assert n.probe_address == IPv4Interface("198.18.10.250/24")
    assert n.gateways == [IPv4Address("198.18.10.1")]
    assert n.dhcp_servers == [IPv4Address("198.18.10.1")]
    assert n.external_target == IPv4Address("203.0.113.80")

    t = profile.terminals
    assert t.hostname_pattern == r"^WB-(?P<number>\d+)$"
    assert t.first_address == IPv4Address("198.18.10.101")
    assert t.mac_table == {"02:00:00:00:00:01": 1, "02:00:00:00:00:02": 2}

    s = profile.servers
    assert [(b.address, b.product) for b in s.billing] == [(IPv4Address("198.18.10.5"), "pubwin")]
    assert [(a.address, a.product) for a in s.audit] == [
        (IPv4Address("198.18.10.6"), "generic-audit")
    ]
    assert s.cameras == 4
    first, second = s.log_sources
    assert first.address == IPv4Address("198.18.10.5")
    assert (first.port, first.username) == (22, "auditor")
    assert first.password_file == staged / "secrets" / "log5.pass"
    assert first.password_file.is_absolute()
    assert first.key_file is None
    assert first.host_key == HOST_KEY
    assert first.paths[0].path == "/var/log/billing"
    assert first.paths[0].name_pattern == "billing-%Y%m%d.log"
    assert first.paths[0].recursive is False
    assert (second.port, second.key_file) == (2222, staged / "secrets" / "log6.key")
    assert second.host_key is None
    assert second.paths[0].recursive is True and second.paths[0].name_pattern is None

    router, switch = s.snmp
    assert router.address == IPv4Address("198.18.10.1")
    assert router.community_file == staged / "secrets" / "snmp.community"
    assert router.role == "router" and router.v3 is None
    assert switch.role == "switch" and switch.community_file is None
    assert switch.v3 is not None
    assert switch.v3.user == "probe"
    assert switch.v3.auth_key_file == staged / "secrets" / "v3.auth"
    assert switch.v3.priv_key_file == staged / "secrets" / "v3.priv"
    assert (switch.v3.auth_protocol, switch.v3.priv_protocol) == ("sha256", "aes128")

    # A dump validates again to an equal profile (secret paths are absolute now).
    again = VenueProfile.model_validate(profile.model_dump())
    assert again == profile


def test_minimal_profile_gets_defaults(tmp_path: Path) -> None:
    text = """
venue: {id: X-1, name: 小网吧, licensed_terminals: 0}
network: {subnets: [198.18.12.0/24], gateways: }
terminals: {first_address: 198.18.12.10}
"""
    profile = parse_profile(text, tmp_path)
    assert profile.venue.licensed_servers == 0
    assert profile.venue.credit_code is None
    assert profile.network.gateways == [] and profile.network.dhcp_servers == []
    assert profile.network.probe_address is None and profile.network.external_target is None
    assert profile.terminals.hostname_pattern is None and profile.terminals.mac_table == {}
    assert profile.servers.billing == [] and profile.servers.cameras == 0
    assert profile.servers.log_sources == [] and profile.servers.snmp == []
    assert profile.machine_number("WB-1") is None


def test_profile_sha256_is_of_the_file_bytes(staged: Path) -> None:
    path = write_profile(staged, valid_dict())
    assert profile_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ProfileError):
        profile_sha256(staged / "nope.yaml")


def test_byte_order_mark_is_accepted(staged: Path) -> None:
    path = staged / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(valid_dict(), allow_unicode=True).encode())
    assert load_profile(path).venue.name == "星际网咖"


# --------------------------------------------------------------------------
# Each kind of mistake names its key


def test_unknown_key_is_named(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["hostname_patern"] = data["terminals"].pop("hostname_pattern")
    assert "terminals.hostname_patern: 未知的键 / unknown key" in problems_of(staged, data)


def test_unknown_top_level_key_and_warnings_key_are_refused(staged: Path) -> None:
    data = valid_dict()
    data["warnings"] = ["x"]
    data["extra"] = 1
    problems = problems_of(staged, data)
    assert "warnings: 未知的键 / unknown key" in problems
    assert "extra: 未知的键 / unknown key" in problems


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("venue", "id"),
        ("venue", "name"),
        ("venue", "licensed_terminals"),
        ("network", "subnets"),
        ("terminals", "first_address"),
    ],
)
def test_missing_required_key_is_named(staged: Path, section: str, key: str) -> None:
    data = valid_dict()
    del data[section][key]
    assert f"{section}.{key}: 缺少必填的键 / missing required key" in problems_of(staged, data)


def test_missing_section_is_named(staged: Path) -> None:
    data = valid_dict()
    del data["terminals"]
    assert "terminals: 缺少必填的键 / missing required key" in problems_of(staged, data)


@pytest.mark.parametrize("bad", ["198.18.10.0/33", "not-a-network", "198.18.10.0"])
def test_bad_subnet(staged: Path, bad: str) -> None:
    data = valid_dict()
    data["network"]["subnets"] = [bad]
    line = one_line_starting(problems_of(staged, data), "network.subnets[0]: ")
    assert "不是有效的 IPv4 网段" in line and "not a valid IPv4 network" in line


def test_subnet_with_host_bits_set(staged: Path) -> None:
    data = valid_dict()
    data["network"]["subnets"] = ["198.18.10.1/24"]
    line = one_line_starting(problems_of(staged, data), "network.subnets[0]: ")
    assert line.startswith("network.subnets[0]: 不是有效的 IPv4 网段")
    assert "not a valid IPv4 network: '198.18.10.1/24' has host bits set" in line
    assert "198.18.10.0/24" in line  # the suggestion


def test_subnet_as_yaml_number_says_string(staged: Path) -> None:
    data = valid_dict()
    data["network"]["subnets"] = [198]
    line = one_line_starting(problems_of(staged, data), "network.subnets[0]: ")
    assert "must be a string" in line


def test_overlapping_subnets(staged: Path) -> None:
    data = valid_dict()
    data["network"]["subnets"] = ["198.18.10.0/24", "198.18.12.0/24", "198.18.10.128/25"]
    line = one_line_starting(problems_of(staged, data), "network.subnets[2]: ")
    assert "重叠" in line and "overlaps subnets[0] (198.18.10.0/24)" in line


def test_subnets_nested_in_one_big_subnet_are_each_named(staged: Path) -> None:
    data = valid_dict()
    data["network"]["subnets"] = ["198.18.10.0/24", "198.18.0.0/16", "198.18.20.0/24", "198.18.10.0/24"]
    problems = problems_of(staged, data)
    assert "overlaps subnets[0]" in one_line_starting(problems, "network.subnets[1]: ")
    assert "overlaps subnets[1]" in one_line_starting(problems, "network.subnets[2]: ")
    one_line_starting(problems, "network.subnets[3]: ")


def test_bad_address_and_interface(staged: Path) -> None:
    data = valid_dict()
    data["network"]["gateways"] = ["198.18.10.256"]
    data["network"]["probe_address"] = "198.18.10.250"  # no prefix length
    problems = problems_of(staged, data)
    assert "not a valid IPv4 address" in one_line_starting(problems, "network.gateways[0]: ")
    assert "no prefix length" in one_line_starting(problems, "network.probe_address: ")


def test_bad_regex(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["hostname_pattern"] = r"^WB-(?P<number>\d+$"
    line = one_line_starting(problems_of(staged, data), "terminals.hostname_pattern: ")
    assert "不是有效的正则表达式" in line and "not a valid regular expression" in line


def test_regex_without_number_group(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["hostname_pattern"] = r"^WB-(?P<num>\d+)$"
    line = one_line_starting(problems_of(staged, data), "terminals.hostname_pattern: ")
    assert "number" in line


def test_first_address_outside_subnets(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["first_address"] = "198.18.11.1"
    line = one_line_starting(problems_of(staged, data), "terminals.first_address: ")
    assert "198.18.11.1 is not inside network.subnets (198.18.10.0/24)" in line


def test_first_address_on_network_address(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["first_address"] = "198.18.10.0"
    one_line_starting(problems_of(staged, data), "terminals.first_address: ")


def test_probe_address_outside_subnets(staged: Path) -> None:
    data = valid_dict()
    data["network"]["probe_address"] = "198.18.99.250/24"
    one_line_starting(problems_of(staged, data), "network.probe_address: ")


def test_external_target_inside_subnets(staged: Path) -> None:
    data = valid_dict()
    data["network"]["external_target"] = "198.18.10.80"
    one_line_starting(problems_of(staged, data), "network.external_target: ")


@pytest.mark.parametrize(
    ("value", "english"),
    [(-1, "must be >= 0"), ("120", "must be a whole number"), (True, "must be a whole number"),
     (1.5, "must be a whole number")],
)
def test_licensed_terminals_must_be_a_count(staged: Path, value: Any, english: str) -> None:
    data = valid_dict()
    data["venue"]["licensed_terminals"] = value
    line = one_line_starting(problems_of(staged, data), "venue.licensed_terminals: ")
    assert english in line


def test_number_where_a_string_belongs_says_quote_it(staged: Path) -> None:
    data = valid_dict()
    data["venue"]["id"] = 42
    line = one_line_starting(problems_of(staged, data), "venue.id: ")
    assert "quote" in line


def test_several_problems_are_reported_together(staged: Path) -> None:
    data = valid_dict()
    data["venue"]["bogus"] = 1
    data["network"]["subnets"] = ["198.18.10.1/24"]
    data["servers"]["cameras"] = -3
    problems = problems_of(staged, data)
    one_line_starting(problems, "venue.bogus: ")
    one_line_starting(problems, "network.subnets[0]: ")
    one_line_starting(problems, "servers.cameras: ")


# --------------------------------------------------------------------------
# Secrets


def test_secret_file_readable_by_others_is_refused(staged: Path) -> None:
    secret = staged / "secrets" / "log5.pass"
    secret.chmod(0o644)
    problems = problems_of(staged, valid_dict())
    line = one_line_starting(problems, "servers.log_sources[0].password_file: ")
    assert "0644" in line and str(secret) in line and "chmod 600" in line
    assert all(SECRET_TEXT not in p for p in problems)


def test_secret_file_0400_is_fine(staged: Path) -> None:
    (staged / "secrets" / "snmp.community").chmod(0o400)
    profile = load_profile(write_profile(staged, valid_dict()))
    assert profile.servers.snmp[0].community_file == staged / "secrets" / "snmp.community"


def test_missing_secret_file(staged: Path) -> None:
    (staged / "secrets" / "v3.priv").unlink()
    line = one_line_starting(problems_of(staged, valid_dict()), "servers.snmp[1].v3.priv_key_file: ")
    assert "does not exist" in line and "v3.priv" in line


def test_secret_that_is_a_directory(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["password_file"] = "secrets"
    line = one_line_starting(problems_of(staged, data), "servers.log_sources[0].password_file: ")
    assert "not a regular file" in line


def test_absolute_secret_path_is_allowed(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["password_file"] = str(staged / "secrets" / "log5.pass")
    data["servers"]["log_sources"][1]["key_file"] = str(staged / "secrets" / "log6.key")
    data["servers"]["snmp"] = []
    elsewhere = staged / "profiles"
    elsewhere.mkdir()
    profile = load_profile(write_profile(elsewhere, data))
    assert profile.servers.log_sources[0].password_file == staged / "secrets" / "log5.pass"


def test_relative_secrets_resolve_against_the_profile_directory(staged: Path) -> None:
    sub = staged / "profiles"
    sub.mkdir()
    # secrets/ lies beside the profile's parent, not beside the profile.
    problems = problems_of(sub, valid_dict())
    one_line_starting(problems, "servers.log_sources[0].password_file: ")
    data = valid_dict()
    data["servers"]["log_sources"][0]["password_file"] = "../secrets/log5.pass"
    data["servers"]["log_sources"][1]["key_file"] = "../secrets/log6.key"
    data["servers"]["snmp"] = []
    profile = load_profile(write_profile(sub, data))
    assert profile.servers.log_sources[0].password_file == staged / "secrets" / "log5.pass"


def test_both_password_file_and_key_file(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["key_file"] = "secrets/log6.key"
    line = one_line_starting(problems_of(staged, data), "servers.log_sources[0]: ")
    assert "password_file" in line and "key_file" in line and "not both" in line


def test_neither_password_file_nor_key_file(staged: Path) -> None:
    data = valid_dict()
    del data["servers"]["log_sources"][0]["password_file"]
    line = one_line_starting(problems_of(staged, data), "servers.log_sources[0]: ")
    assert "password_file" in line and "key_file" in line


def test_snmp_needs_exactly_one_credential(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["snmp"][1]["community_file"] = "secrets/snmp.community"
    del data["servers"]["snmp"][0]["community_file"]
    problems = problems_of(staged, data)
    one_line_starting(problems, "servers.snmp[0]: ")
    one_line_starting(problems, "servers.snmp[1]: ")


def test_snmp_protocol_names(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["snmp"][1]["v3"]["priv_protocol"] = "rc4"
    line = one_line_starting(problems_of(staged, data), "servers.snmp[1].v3.priv_protocol: ")
    assert "must be one of" in line


# --------------------------------------------------------------------------
# Credit code


@pytest.mark.parametrize(
    "code",
    [
        "91350105MA2Y0XXXX",  # 17 characters
        "91350105MA2Y0XXXXLL",  # 19 characters
        "9135010AMA2Y0XXXXL",  # letter in the region code
        "91350105MA2Y0XXXIL",  # I is not in the alphabet
    ],
)
def test_malformed_credit_code_is_an_error(staged: Path, code: str) -> None:
    data = valid_dict()
    data["venue"]["credit_code"] = code
    line = one_line_starting(problems_of(staged, data), "venue.credit_code: ")
    assert "统一社会信用代码" in line


def test_wrong_check_character_only_is_a_warning(staged: Path) -> None:
    data = valid_dict()
    data["venue"]["credit_code"] = WRONG_CHECK_CODE
    profile = load_profile(write_profile(staged, data))
    assert profile.venue.credit_code == WRONG_CHECK_CODE
    assert len(profile.warnings) == 1
    assert profile.warnings[0].startswith("venue.credit_code: ")
    assert "L" in profile.warnings[0]  # the expected check character


def test_credit_code_is_compacted(staged: Path) -> None:
    data = valid_dict()
    data["venue"]["credit_code"] = "91350105 ma2y0xxxxl"
    assert load_profile(write_profile(staged, data)).venue.credit_code == GOOD_CODE


def test_numbering_beyond_the_subnet_is_a_warning(staged: Path) -> None:
    data = valid_dict()
    data["venue"]["licensed_terminals"] = 200  # .101 + 199 = .300: outside the /24
    profile = load_profile(write_profile(staged, data))
    assert any(w.startswith("terminals.first_address: ") for w in profile.warnings)


# --------------------------------------------------------------------------
# MAC table


def test_mac_forms_are_normalised(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["mac_table"] = {
        "02:AB:cd:00:00:01": 1,
        "02-AB-CD-00-00-02": 2,
        "02ab.cd00.0003": 3,
    }
    profile = load_profile(write_profile(staged, data))
    assert profile.terminals.mac_table == {
        "02:ab:cd:00:00:01": 1,
        "02:ab:cd:00:00:02": 2,
        "02:ab:cd:00:00:03": 3,
    }
    assert normalise_mac("02AB.CD00.0003") == "02:ab:cd:00:00:03"


@pytest.mark.parametrize("bad", ["02:ab:cd:00:00", "02:ab-cd:00:00:01", "02abcd000001", "zz:ab:cd:00:00:01"])
def test_normalise_mac_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_mac(bad)


def test_duplicate_mac_after_normalisation(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["mac_table"] = {"02:ab:cd:00:00:01": 1, "02-AB-CD-00-00-01": 2}
    line = one_line_starting(problems_of(staged, data), "terminals.mac_table")
    assert "02:ab:cd:00:00:01" in line


def test_duplicate_machine_number(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["mac_table"] = {"02:ab:cd:00:00:01": 7, "02:ab:cd:00:00:02": 7}
    line = one_line_starting(problems_of(staged, data), 'terminals.mac_table["02:ab:cd:00:00:02"]: ')
    assert "machine number 7" in line


def test_bad_and_multicast_macs_and_negative_numbers(staged: Path) -> None:
    data = valid_dict()
    data["terminals"]["mac_table"] = {"not-a-mac": 1, "01:00:5e:00:00:01": 2}
    problems = problems_of(staged, data)
    one_line_starting(problems, 'terminals.mac_table["not-a-mac"]: ')
    one_line_starting(problems, 'terminals.mac_table["01:00:5e:00:00:01"]: ')
    data["terminals"]["mac_table"] = {"02:ab:cd:00:00:01": -1}
    line = one_line_starting(problems_of(staged, data), 'terminals.mac_table["02:ab:cd:00:00:01"]: ')
    assert ">= 0" in line


def test_yaml_base60_mac_and_octal_number_are_caught(tmp_path: Path) -> None:
    text = """
venue: {id: X-1, name: n, licensed_terminals: 10}
network: {subnets: [198.18.10.0/24]}
terminals:
  first_address: 198.18.10.1
  mac_table:
    10:20:30:40:50:59: 1
    "02:00:00:00:00:01": 010
"""
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, tmp_path)
    problems = caught.value.problems
    assert "base-60" in one_line_starting(problems, 'terminals.mac_table["10:20:30:40:50:59"]: ')
    assert "octal number 8" in one_line_starting(problems, 'terminals.mac_table["02:00:00:00:00:01"]: ')


def test_duplicate_yaml_keys_are_caught(tmp_path: Path) -> None:
    text = """
venue: {id: X-1, name: n, licensed_terminals: 10}
network: {subnets: [198.18.10.0/24]}
terminals:
  first_address: 198.18.10.1
  mac_table:
    "02:00:00:00:00:01": 1
    "02:00:00:00:00:01": 2
"""
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, tmp_path)
    line = one_line_starting(caught.value.problems, 'terminals.mac_table["02:00:00:00:00:01"]: ')
    assert "duplicate key (lines 7 and 8)" in line


# --------------------------------------------------------------------------
# Numbering helpers


def numbered(tmp_path: Path, subnet: str, first: str) -> VenueProfile:
    text = f"""
venue: {{id: X-1, name: n, licensed_terminals: 10}}
network: {{subnets: [{subnet}]}}
terminals: {{hostname_pattern: '^WB-(?P<number>\\d+)$', first_address: {first}}}
"""
    return parse_profile(text, tmp_path)


def test_machine_number_is_case_insensitive_and_reads_leading_zeros(tmp_path: Path) -> None:
    profile = numbered(tmp_path, "198.18.20.0/24", "198.18.20.11")
    assert profile.machine_number("WB-007") == 7
    assert profile.machine_number("wb-007") == 7
    assert profile.machine_number("Wb-12") == 12
    assert profile.machine_number("WB-0") == 0
    assert profile.machine_number("WB-12X") is None  # full match only
    assert profile.machine_number("XWB-12") is None
    assert profile.machine_number("WB-") is None
    assert profile.machine_number("WB-٣") is None  # \d matches Arabic-Indic digits; not ours
    assert profile.machine_number("") is None


def test_machine_number_needs_digits_in_the_group(tmp_path: Path) -> None:
    text = """
venue: {id: X-1, name: n, licensed_terminals: 10}
network: {subnets: [198.18.20.0/24]}
terminals: {hostname_pattern: '(?P<number>[A-Z]+)-PC', first_address: 198.18.20.11}
"""
    profile = parse_profile(text, tmp_path)
    assert profile.machine_number("ABC-PC") is None


def test_expected_address_with_offset_first_address(tmp_path: Path) -> None:
    profile = numbered(tmp_path, "198.18.20.0/24", "198.18.20.11")
    assert profile.expected_address(1) == IPv4Address("198.18.20.11")
    assert profile.expected_address(5) == IPv4Address("198.18.20.15")
    assert profile.expected_address(0) == IPv4Address("198.18.20.10")


def test_expected_address_across_an_octet_boundary(tmp_path: Path) -> None:
    profile = numbered(tmp_path, "198.18.20.0/22", "198.18.20.11")
    assert profile.expected_address(245) == IPv4Address("198.18.20.255")
    assert profile.expected_address(246) == IPv4Address("198.18.21.0")
    assert profile.expected_address(250) == IPv4Address("198.18.21.4")
    assert profile.expected_address(600) == IPv4Address("198.18.22.98")


def test_expected_address_overflow_is_none(tmp_path: Path) -> None:
    profile = numbered(tmp_path, "255.255.255.0/24", "255.255.255.250")
    assert profile.expected_address(6) == IPv4Address("255.255.255.255")
    assert profile.expected_address(7) is None
    low = numbered(tmp_path, "0.0.0.0/24", "0.0.0.1")
    assert low.expected_address(0) == IPv4Address("0.0.0.0")
    assert low.expected_address(-1) is None


# --------------------------------------------------------------------------
# Other fields


def test_host_key_comment_is_dropped_and_bad_keys_refused(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["host_key"] = f"{HOST_KEY}  root@billing"
    profile = load_profile(write_profile(staged, data))
    assert profile.servers.log_sources[0].host_key == HOST_KEY
    for bad in ["ssh-ed25519 AAAA…", f"ssh-rsa {HOST_KEY_B64}", "AAAAC3Nza", "ssh-dss AAAA"]:
        data["servers"]["log_sources"][0]["host_key"] = bad
        one_line_starting(problems_of(staged, data), "servers.log_sources[0].host_key: ")


@pytest.mark.parametrize("pattern", ["billing-%Y%m.log", "billing-%Q.log", "billing.log", "%"])
def test_name_pattern_must_identify_a_day(staged: Path, pattern: str) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["paths"][0]["name_pattern"] = pattern
    one_line_starting(problems_of(staged, data), "servers.log_sources[0].paths[0].name_pattern: ")


def test_name_pattern_day_of_year_is_fine(staged: Path) -> None:
    data = valid_dict()
    data["servers"]["log_sources"][0]["paths"][0]["name_pattern"] = "%Y/%j.log"
    load_profile(write_profile(staged, data))


# --------------------------------------------------------------------------
# File and YAML level


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(tmp_path / "nope.yaml")
    assert "cannot read file" in str(caught.value)
    with pytest.raises(ProfileError):
        load_profile(tmp_path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gbk.yaml"
    path.write_bytes("venue: {name: 星际网咖}".encode("gbk"))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert "UTF-8" in str(caught.value)


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile("venue:\n  id: a\n  name: [unclosed\n", tmp_path)
    assert "line " in str(caught.value) and "column " in str(caught.value)
    with pytest.raises(ProfileError) as caught:
        parse_profile("venue:\n  id: a\n name: b: c\n", tmp_path)
    assert "line 3" in str(caught.value)


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a\n- b\n", "42", "just text"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ProfileError):
        parse_profile(text, tmp_path)


@pytest.mark.parametrize(
    "text",
    ["[" * 20000, "{a: " * 20000, "- " * 5000 + "x", "venue: 2024-13-01", "a: !!int abc",
     "a: !!timestamp x", "a: !!python/object:os.system {}", "a: &x [*x]\nvenue: *x",
     "--- a\n--- b\n", "a: \x00", "? [1]\n: 2"],
)
def test_hostile_yaml_raises_profile_error_only(tmp_path: Path, text: str) -> None:
    with pytest.raises(ProfileError):
        parse_profile(text, tmp_path)


def test_profile_error_pickles_and_joins_lines() -> None:
    error = ProfileError(["a: x / x", "b: y / y", "a: x / x"])
    assert error.problems == ["a: x / x", "b: y / y"]
    assert str(error) == "a: x / x\nb: y / y"
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems


# --------------------------------------------------------------------------
# Fuzzing: a VenueProfile or a ProfileError, never anything else

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzz")
    make_secrets(base)
    return base


def parse_or_profile_error(text: str, base: Path) -> None:
    try:
        result = parse_profile(text, base)
    except ProfileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        str(exc)
    else:
        assert isinstance(result, VenueProfile)


@FUZZ
@given(st.text())
def test_fuzz_random_text(fuzz_dir: Path, text: str) -> None:
    parse_or_profile_error(text, fuzz_dir)


@FUZZ
@given(st.binary())
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    parse_or_profile_error(data.decode("utf-8", errors="replace"), fuzz_dir)
    parse_or_profile_error(data.decode("latin-1"), fuzz_dir)
    path = fuzz_dir / "fuzz.yaml"
    path.write_bytes(data)
    try:
        assert isinstance(load_profile(path), VenueProfile)
    except ProfileError:
        pass


KEYS = [
    "venue", "id", "name", "credit_code", "address", "licensed_terminals", "licensed_servers",
    "network", "subnets", "probe_address", "gateways", "dhcp_servers", "external_target",
    "terminals", "hostname_pattern", "first_address", "mac_table", "servers", "billing",
    "audit", "cameras", "log_sources", "snmp", "port", "username", "password_file", "key_file",
    "host_key", "paths", "path", "name_pattern", "recursive", "product", "community_file", "v3",
    "user", "auth_key_file", "priv_key_file", "auth_protocol", "priv_protocol", "role",
]
FLAVOURED = [
    "198.18.10.0/24", "198.18.10.1/24", "198.18.10.1", "198.18.10.250/24", "203.0.113.80",
    "02:00:00:00:00:01", "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", r"^WB-(?P<number>\d+)$",
    "(?P<number>", "secrets/log5.pass", "secrets", "/etc", "billing-%Y%m%d.log", "%",
    HOST_KEY, "ssh-ed25519 AAAA", "router", "SHA-256", GOOD_CODE, WRONG_CHECK_CODE, "",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.dates()
    | st.sampled_from(FLAVOURED)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), inner, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(documents)
def test_fuzz_random_yaml_documents(fuzz_dir: Path, doc: Any) -> None:
    parse_or_profile_error(yaml.safe_dump(doc, allow_unicode=True), fuzz_dir)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return out
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_profile(fuzz_dir: Path, data: st.DataObject) -> None:
    doc = valid_dict()
    for path in data.draw(st.lists(st.sampled_from(_paths(doc)), min_size=1, max_size=4)):
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced it
        if not isinstance(parent, (dict, list)):
            continue  # replaced by a scalar that happens to be indexable
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(scalars | documents)
    parse_or_profile_error(yaml.safe_dump(doc, allow_unicode=True), fuzz_dir)


def test_fuzz_dir_secret_modes_are_private(fuzz_dir: Path) -> None:
    # Guards the fuzz tests above: they are only meaningful if the unmutated
    # profile loads from fuzz_dir.
    for name in SECRET_NAMES:
        assert os.stat(fuzz_dir / "secrets" / name).st_mode & 0o077 == 0
    assert isinstance(parse_profile(yaml.safe_dump(valid_dict(), allow_unicode=True), fuzz_dir), VenueProfile)
