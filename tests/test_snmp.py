"""The SNMP collector against Debian's real snmpd, in namespaces this module builds and removes.

Topology (one agent, one client, one "ISP"):

    client eth0 198.18.61.250/24 ── lan0 198.18.61.1/24  [agent: snmpd on 198.18.61.1:161]
                                    wan0 203.0.113.2/24  ── isp0 203.0.113.1   default metric 100
                                    wan1 198.51.100.2/24 ── isp1 198.51.100.1  default metric 200
                                    spare0 up, its peer in the ISP left down

The collector runs in the client namespace; everything it sends stays there.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    OctetString,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
    set_cmd,
    usmAesCfb128Protocol,
    usmHMACSHAAuthProtocol,
)

from lab import netns as ns
from lab.snmpd import snmpd_config, start_snmpd
from probe.net import snmp
from probe.observations import SnmpDevice
from probe.profile import SnmpTarget, parse_profile
from tests.conftest import new_lab_id

pytestmark = pytest.mark.lab

LISTEN = IPv4Address("198.18.61.1")
CLIENT = "198.18.61.250"
V3_USER = "cafeprobe"
SYS_NAME = "lab-router"
TIMEOUT, RETRIES = 0.4, 1
PYSNMP_DEFAULT_BUDGET = 1.0 * (5 + 1)  # UdpTransportTarget's own timeout × (retries + 1)
SYS_LOCATION = (1, 3, 6, 1, 2, 1, 1, 6, 0)


@dataclass
class Agent:
    client: str
    agent: str
    record: ns.ProcRecord
    state: Path
    base: Path  # the profile's directory, with secrets/ beside it
    community: str
    auth: str
    priv: str
    macs: dict[str, str]

    def secrets(self) -> list[str]:
        return [self.community, self.auth, self.priv]


def _build(names: dict[str, str]) -> None:
    ag, cl, isp = names["ag"], names["cl"], names["isp"]
    ns.ipv4_only(names.values())
    ns.ip_batch(["link set lo up",
                 f"link add lan0 type veth peer name eth0 netns {cl}",
                 f"link add wan0 type veth peer name isp0 netns {isp}",
                 f"link add wan1 type veth peer name isp1 netns {isp}",
                 f"link add spare0 type veth peer name spare-isp netns {isp}", "link set spare0 up",
                 f"addr add {LISTEN}/24 dev lan0", "link set lan0 up",
                 "addr add 203.0.113.2/24 dev wan0", "link set wan0 up",
                 "addr add 198.51.100.2/24 dev wan1", "link set wan1 up"], netns=ag)
    ns.ip_batch(["link set lo up", "addr add 203.0.113.1/24 dev isp0", "link set isp0 up",
                 "addr add 198.51.100.1/24 dev isp1", "link set isp1 up"], netns=isp)
    ns.ip_batch(["link set lo up", f"addr add {CLIENT}/24 dev eth0", "link set eth0 up",
                 f"route add default via {LISTEN}"], netns=cl)
    # After the links are up: a gateway must be reachable to be accepted.
    ns.ip_batch(["route add default via 203.0.113.1 metric 100",
                 "route add default via 198.51.100.1 metric 200"], netns=ag)


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    lab_id = new_lab_id("s")
    names = {role: f"{lab_id}-{role}" for role in ("ag", "cl", "isp")}
    state = tmp_path_factory.mktemp("snmpd-state")
    base = tmp_path_factory.mktemp("snmp-profile")
    made: list[str] = []
    proc = record = None
    try:
        for name in names.values():
            made.append(name)
            ns.ip_batch([f"netns add {name}"])
        _build(names)
        community, auth, priv = (secrets.token_urlsafe(18) for _ in range(3))
        proc, record = start_snmpd(names["ag"], state, snmpd_config(LISTEN, community, V3_USER, auth, priv,
                                                                  sys_name=SYS_NAME), LISTEN)
        links = json.loads(ns.run_in(names["ag"], ["ip", "-j", "link", "show"]))
        macs = {link["ifname"]: link.get("address") for link in links}
        (base / "secrets").mkdir(mode=0o700)
        for name, value in {"community": community, "auth": auth, "priv": priv,
                            "wrong-community": secrets.token_urlsafe(18),
                            "wrong-auth": secrets.token_urlsafe(18),
                            "gone": secrets.token_urlsafe(18), "same-community": community}.items():
            _write_secret(base / "secrets" / name, value)
        yield Agent(names["cl"], names["ag"], record, state, base, community, auth, priv, macs)
    finally:
        if record is not None:
            ns.stop(record)  # by its PID; reaps it too
            proc.wait(timeout=5)
        ns.ip_batch((f"netns del {n}" for n in made), force=True)
    assert not any(ns.netns_exists(n) for n in made)


PROFILE = """
venue: {{id: LAB-SNMP, name: 实验室, licensed_terminals: 1}}
network: {{subnets: [198.18.61.0/24]}}
terminals: {{first_address: 198.18.61.10}}
servers:
  snmp:
    - {{address: {listen}, community_file: secrets/community, role: router}}
    - address: {listen}
      role: router
      v3: {{user: {user}, auth_key_file: secrets/auth, priv_key_file: secrets/priv, auth_protocol: sha,
           priv_protocol: aes128}}
    - {{address: {listen}, community_file: secrets/wrong-community, role: router}}
    - address: {listen}
      role: router
      v3: {{user: {user}, auth_key_file: secrets/wrong-auth, priv_key_file: secrets/priv}}
    - {{address: 203.0.113.2, community_file: secrets/community}}
    - {{address: {listen}, community_file: secrets/gone, role: switch}}
    - {{address: {listen}, community_file: secrets/same-community}}
"""


def _targets(agent: Agent) -> list[SnmpTarget]:
    profile = parse_profile(PROFILE.format(listen=LISTEN, user=V3_USER), agent.base)
    return profile.servers.snmp


def _collect(agent: Agent, targets: list[SnmpTarget], **kw) -> tuple[list[SnmpDevice], float]:
    started = time.monotonic()
    with ns.inside(agent.client):  # the engine's socket is made in the client namespace
        devices = snmp.collect(targets, timeout=TIMEOUT, retries=RETRIES, **kw)
    return devices, time.monotonic() - started


@pytest.fixture(scope="module")
def run(agent: Agent):
    targets = _targets(agent)
    (agent.base / "secrets" / "gone").unlink()  # the profile was valid; the file went away before the run
    devices, seconds = _collect(agent, targets)
    return {"targets": targets, "devices": devices, "seconds": seconds}


def _by_name(device: SnmpDevice):
    return {i.name: i for i in device.interfaces}


def test_v2c_reads_the_system_interfaces_and_addresses(run, agent):
    device = run["devices"][0]
    assert device.ok and device.error is None and device.version == "2c" and device.role == "router"
    assert device.sys_name == SYS_NAME and device.sys_descr and device.sys_descr.startswith("Linux")
    ifs = _by_name(device)
    assert set(ifs) == {"lo", "lan0", "wan0", "wan1", "spare0"}
    assert ifs["lo"].type == 24 and ifs["lo"].addresses == [IPv4Interface("127.0.0.1/8")]
    expected = {"lan0": f"{LISTEN}/24", "wan0": "203.0.113.2/24", "wan1": "198.51.100.2/24"}
    for name, address in expected.items():
        got = ifs[name]
        assert got.type == 6 and got.admin_up is True and got.oper_up is True, got
        assert got.addresses == [IPv4Interface(address)]
        assert got.mac == agent.macs[name]
        # veth reports 10 Gb/s: ifSpeed is pinned at 2³²-1, so this came from ifHighSpeed
        assert got.speed_mbps == 10000
    # up by the administrator, nothing on the other end: not a working line
    assert ifs["spare0"].admin_up is True and ifs["spare0"].oper_up is False and ifs["spare0"].addresses == []
    assert device.bridge == [] and not device.truncated  # net-snmp has no BRIDGE-MIB: absent is not an error


def test_v2c_reads_both_default_routes(run):
    device = run["devices"][0]
    ifs = _by_name(device)
    defaults = snmp.default_routes(device.routes)
    assert {(r.next_hop, r.if_index) for r in defaults} == {
        (IPv4Address("203.0.113.1"), ifs["wan0"].index), (IPv4Address("198.51.100.1"), ifs["wan1"].index)}
    assert all(r.table == "inetCidrRouteTable" for r in device.routes)
    connected = {(r.destination, r.if_index) for r in device.routes if r.next_hop is None}
    assert connected == {(IPv4Network("198.18.61.0/24"), ifs["lan0"].index),
                         (IPv4Network("203.0.113.0/24"), ifs["wan0"].index),
                         (IPv4Network("198.51.100.0/24"), ifs["wan1"].index)}


def test_v3_authpriv_reads_the_same(run):
    v2c, v3 = run["devices"][0], run["devices"][1]
    assert v3.ok and v3.version == "3" and v3.error is None
    assert (v3.sys_name, v3.sys_descr) == (v2c.sys_name, v2c.sys_descr)
    assert v3.interfaces == v2c.interfaces and v3.routes == v2c.routes


def test_wrong_community_is_a_bounded_timeout(run):
    device = run["devices"][2]
    assert not device.ok and device.error == "timeout"
    assert "no answer (wrong community, ACL, or agent down)" in device.error_detail
    budget = TIMEOUT * (RETRIES + 1)
    # our timeout × tries, not pysnmp's default 1 s × 6: at least our budget (it waited every try), and
    # far below pysnmp's, with room for a busy machine in between.
    assert budget * 0.9 <= device.seconds < PYSNMP_DEFAULT_BUDGET / 2, device.seconds
    assert device.interfaces == [] and device.routes == [] and device.sys_name is None


def test_wrong_v3_password_is_auth(run):
    device = run["devices"][3]
    # "auth" comes only from the agent's report (usmStatsWrongDigests), never from a timeout, which would
    # say "timeout": that is what shows the agent said so at once, on a machine of any speed.
    assert not device.ok and device.error == "auth" and device.version == "3"


def test_an_address_without_agent_times_out(run):
    device = run["devices"][4]  # the agent's own WAN address: snmpd listens on the LAN address only
    assert not device.ok and device.error == "timeout" and device.address == IPv4Address("203.0.113.2")


def test_unreadable_community_file(run, agent):
    device = run["devices"][5]
    assert not device.ok and device.error == "credentials_unreadable" and device.role == "switch"
    assert str(agent.base / "secrets" / "gone") in device.error_detail


def test_two_targets_with_one_community_both_read(run):
    # The shared engine maps a community to one securityName; a second one would never get its answers.
    first, again = run["devices"][0], run["devices"][6]
    assert again.ok and again.interfaces == first.interfaces and again.routes == first.routes


def test_one_device_per_target_in_order_and_all_at_once(run):
    assert [d.address for d in run["devices"]] == [t.address for t in run["targets"]]
    # the targets ran side by side: one after another, the run would take at least the sum of their own
    # times (two of them a whole timeout budget each), however fast or slow the machine
    assert run["seconds"] < sum(d.seconds for d in run["devices"]), (run["seconds"],
                                                                     [d.seconds for d in run["devices"]])


def test_no_secret_in_any_device(run, agent):
    text = json.dumps([d.model_dump(mode="json") for d in run["devices"]], ensure_ascii=False)
    for value in agent.secrets():
        assert value not in text
    for target in run["targets"][:2]:
        shown = repr(snmp.read_credentials(target)) + str(snmp.read_credentials(target))
        assert not any(value in shown for value in agent.secrets())


def test_row_cap_truncates(run, agent):
    (device,), _ = _collect(agent, run["targets"][:1], max_rows=2)
    assert device.ok and device.truncated
    assert len(device.interfaces) == 2 and len(device.routes) == 2


def test_snmpd_listens_on_the_lab_address_only_and_keeps_state_in_the_lab(agent):
    sockets = ns.run_in(agent.agent, ["ss", "-Htuln"]).splitlines()
    assert [line.split()[4] for line in sockets] == [f"{LISTEN}:161"], sockets
    assert ns.is_running(agent.record)
    assert (agent.state / "snmpd.conf").stat().st_mode & 0o777 == 0o600
    assert any((agent.state / "snmpd-persist").iterdir())  # its persistent files went to the lab's dir
    assert "NET-SNMP version" in (agent.state / "snmpd.log").read_text()


def test_the_agent_refuses_every_write(agent):
    async def attempt(auth) -> tuple[int, str]:
        engine = SnmpEngine()
        try:
            target = await UdpTransportTarget.create((str(LISTEN), 161), timeout=TIMEOUT, retries=RETRIES)
            indication, status, _, _ = await set_cmd(
                engine, auth, target, ContextData(), ObjectType(ObjectIdentity(SYS_LOCATION), OctetString("x")))
            assert indication is None, indication
            _, _, _, var_binds = await get_cmd(engine, auth, target, ContextData(),
                                               ObjectType(ObjectIdentity(SYS_LOCATION)), lookupMib=False)
            return int(status), str(var_binds[0][1])
        finally:
            engine.close_dispatcher()

    v2c = CommunityData("w", agent.community, mpModel=1)
    v3 = UsmUserData(V3_USER, agent.auth, agent.priv, authProtocol=usmHMACSHAAuthProtocol,
                     privProtocol=usmAesCfb128Protocol)
    with ns.inside(agent.client):
        for auth in (v2c, v3):
            status, location = asyncio.run(attempt(auth))
            assert status != 0 and location == "cafe-probe lab"
