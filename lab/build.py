"""Build and tear down a lab café from a scenario, and say what was built.

Every namespace and process is written to the lab's state file *before* it
is created, so ``down`` can always remove what ``up`` made, also after a
crash half-way. Processes are stopped by their own PID, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab import logs
from lab import netns as ns
from lab import snmpd, sshd
from lab.scenario import SNMP_V3_USER, Scenario, Terminal, load_scenario, stage_profile
from lab.services import AUDIT_PRODUCT, BILLING_PRODUCTS, REALNAME

__all__ = ["Lab", "LabError", "STATE_ROOT"]

STATE_ROOT = Path(os.environ.get("CAFE_LAB_STATE", "/run/cafe-lab"))
PROBE_IFACE = "eth0"
PROBE_OUI = "00:1e:06"  # the probe's own NIC in the lab
# The officer link: a second link from the probe to the inspector device (Wi-Fi or USB Ethernet on real
# hardware), here its own namespace pair on a /30 of the lab range, never part of any café LAN.
OFFICER_IFACE = "off0"
OFFICER_PROBE_ADDRESS = "198.19.254.2/30"
OFFICER_DEVICE_ADDRESS = "198.19.254.1"


class LabError(RuntimeError):
    """The lab could not be built, found or removed; the message says why."""


class Lab:
    """One running lab café, identified by a short id that prefixes its namespaces."""

    def __init__(self, scenario: Scenario, lab_id: str = "cafe", *, probe_plugged: bool = True,
                 probe_addressed: bool = True, officer_link: bool = False) -> None:
        """``probe_plugged=False`` leaves the probe's café port without carrier until :meth:`set_probe_plugged`;
        ``probe_addressed=False`` gives it no address (a headless probe takes no lease); ``officer_link``
        adds the probe's second link to an inspector-device namespace, down until :meth:`set_officer_link`."""
        if not lab_id.isalnum() or len(lab_id) > 8:
            raise LabError(f"lab id must be 1–8 letters or digits: {lab_id!r}")
        self.scenario = scenario
        self.id = lab_id
        self.state_dir = STATE_ROOT / lab_id
        self.terminals: list[Terminal] = scenario.build_terminals()
        self._state: dict[str, Any] = {"id": lab_id, "scenario": str(scenario.source), "namespaces": [],
                                       "processes": [], "loss_percent": scenario.switch.loss_percent,
                                       "probe_plugged": probe_plugged, "probe_addressed": probe_addressed,
                                       "officer_link": officer_link}

    # -- names -------------------------------------------------------------
    def nsname(self, role: str) -> str:
        return f"{self.id}-{role}"

    @property
    def probe_netns(self) -> str:
        return self.nsname("probe")

    @property
    def device_netns(self) -> str:
        """The inspector device's namespace at the far end of the officer link (with ``officer_link``)."""
        return self.nsname("dev")

    @property
    def probe_mac(self) -> str:
        return f"{PROBE_OUI}:{self.scenario.terminals.seed % 256:02x}:00:01"

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def attach(cls, lab_id: str = "cafe") -> "Lab":
        """The lab that ``up`` left running under this id."""
        state_file = STATE_ROOT / lab_id / "state.json"
        try:
            state = json.loads(state_file.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab '{lab_id}' is up (no {state_file})") from None
        lab = cls(load_scenario(state["scenario"]), lab_id)
        lab._state = state
        return lab

    def up(self) -> "Lab":
        """Build the café; on any failure or interrupt, remove whatever was made."""
        if (self.state_dir / "state.json").exists():
            raise LabError(f"lab '{self.id}' is already up; run 'cafe-lab down --id {self.id}' first")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (it creates network namespaces)")
        tools = ["ip", "nft", "dnsmasq"] + (["snmpd"] if self.scenario.router.snmp != "off" else [])
        for tool in tools:
            if shutil.which(tool) is None:
                raise LabError(f"'{tool}' is not installed (run the README's set-up)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._save()
            self._build()
        except BaseException:
            self.down()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return self

    def down(self) -> None:
        """Stop the lab's processes by PID, delete its namespaces, forget its state."""
        for rec in reversed(self._state.get("processes", [])):
            ns.stop(ns.ProcRecord(**rec))
        names = [n for n in self._state.get("namespaces", []) if ns.netns_exists(n)]
        ns.ip_batch((f"netns del {n}" for n in names), force=True)
        for server in self._state.get("log_servers", []):
            sshd.remove_server_root(Path(server["server_root"]))
        leftover = [n for n in names if ns.netns_exists(n)]
        if leftover:
            raise LabError(f"could not delete namespaces: {' '.join(leftover[:5])}")
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- building ----------------------------------------------------------
    def _save(self) -> None:
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(self._state, indent=1))
        tmp.replace(self.state_dir / "state.json")

    def _add_namespaces(self, names: list[str]) -> None:
        self._state["namespaces"].extend(names)
        self._save()
        ns.ip_batch(f"netns add {n}" for n in names)

    def _build(self) -> None:
        sc = self.scenario
        sw, probe, rt, isp = (self.nsname(r) for r in ("sw", "probe", "rt", "isp"))
        live = [t for t in self.terminals if t.power == "on"]
        extra = [self.nsname("net"), self.home_netns]
        extra += [self.nsname(f"r{k}") for k in range(1, len(sc.routers) + 1)]
        extra += [self._dhcp_ns(k) for k in range(1, len(sc.rogue_dhcp) + 1) if self._dhcp_router(k) is None]
        extra += [self.nsname(f"f{k}") for k in range(1, len(sc.foreign) + 1)]
        extra += [self.nsname("isp2")] if sc.uses_isp2 else []
        extra += [self.device_netns] if self._state.get("officer_link") else []
        extra += [self._service_ns(kind, k) for kind, k, _, _ in self._service_hosts()]
        self._add_namespaces([sw, probe, rt, isp, *extra] + [self._tns(t) for t in live])
        ns.ipv4_only((sw, probe, rt, isp, *extra))
        with ns.inside(rt):
            ns.sysctl("net.ipv4.ip_forward", 1)
        self.staged_profile.parent.mkdir(parents=True, exist_ok=True)
        host_keys, ssh_password = self._prepare_log_servers()
        _, lab_secrets = stage_profile(sc, self.staged_profile.parent, host_keys, ssh_password)

        prefix = sc.lan.subnet.prefixlen
        switch = ["link add br0 type bridge", "link set br0 up",
                  f"link add p-probe type veth peer name {PROBE_IFACE} address {self.probe_mac} netns {probe}",
                  "link set p-probe master br0" + (" up" if self._state.get("probe_plugged", True) else ""),
                  f"link add p-rt type veth peer name lan0 address {sc.router_mac()} netns {rt}",
                  "link set p-rt master br0 up"]
        for t in live:
            switch.append(f"link add t{t.number} type veth peer name eth0 address {t.mac} netns {self._tns(t)}")
            switch.append(f"link set t{t.number} master br0 up")
        ns.ip_batch(switch, netns=sw)
        ns.ip_batch(["link set lo up", f"link set {PROBE_IFACE} up"]
                    + ([f"addr add {sc.lan.probe}/{prefix} dev {PROBE_IFACE}"]
                       if self._state.get("probe_addressed", True) else []), netns=probe)
        if self._state.get("officer_link"):
            ns.ip_batch([f"link add {OFFICER_IFACE} type veth peer name dev0 netns {self.device_netns}",
                         f"link set {OFFICER_IFACE} up", f"addr add {OFFICER_PROBE_ADDRESS} dev {OFFICER_IFACE}"],
                        netns=probe)
            ns.ip_batch(["link set lo up", f"addr add {OFFICER_DEVICE_ADDRESS}/30 dev dev0"],
                        netns=self.device_netns)
        ns.ip_batch(["link set lo up", "link set lan0 up", f"addr add {sc.lan.router}/{prefix} dev lan0",
                     f"link add wan0 type veth peer name w-rt netns {isp}", "link set wan0 up",
                     f"addr add {sc.isp.router_wan}/{sc.isp.subnet.prefixlen} dev wan0",
                     f"route add default via {sc.isp.gateway}"], netns=rt)
        # The ISP side is a bridge, so more than one café router can hang off it. The Internet's hosts
        # sit one hop further (namespace "net"), so a path past a router shows the ISP's gateway first.
        net = self.nsname("net")
        with ns.inside(isp):
            ns.sysctl("net.ipv4.ip_forward", 1)
        ns.ip_batch(["link set lo up", "link add wan type bridge", "link set wan up",
                     "link set w-rt master wan up", f"addr add {sc.isp.gateway}/{sc.isp.subnet.prefixlen} dev wan",
                     f"link add tr-net type veth peer name tr0 netns {net}", "link set tr-net up"]
                    + [f"route add {h}/32 dev tr-net" for h in sc.isp.hosts], netns=isp)
        with ns.inside(isp):
            # The routers see the hosts as on-link (same /24): the ISP answers ARP for them.
            ns.sysctl("net.ipv4.conf.wan.proxy_arp", 1)
        ns.ip_batch(["link set lo up", "link set tr0 up"] + [f"addr add {h}/32 dev tr0" for h in sc.isp.hosts]
                    + [f"route add default via {sc.isp.gateway} dev tr0 onlink"], netns=net)
        if sc.uses_isp2:
            self._build_isp2()
        if sc.router.second_wan:
            isp2 = self.nsname("isp2")
            ns.ip_batch([f"link add wan1 type veth peer name w-rt netns {isp2}", "link set wan1 up",
                         f"addr add {sc.isp2.subnet.network_address + 2}/{sc.isp2.subnet.prefixlen} dev wan1",
                         f"route add default via {sc.isp2.gateway} metric 200"], netns=rt)
            ns.ip_batch(["link set w-rt master wan up"], netns=isp2)
        _nat(rt, icmp=sc.router.icmp)
        for k, spec in enumerate(sc.routers, start=1):
            self._build_router(k, spec.address, spec.isp, spec.icmp)
        for k in range(1, len(sc.rogue_dhcp) + 1):
            if self._dhcp_router(k) is None:
                self._plug(self._dhcp_ns(k), f"p-d{k}", sc.rogue_dhcp_mac(k),
                           f"{sc.rogue_dhcp[k - 1].address}/{prefix}")
        for k, dev in enumerate(sc.foreign, start=1):
            self._plug(self.nsname(f"f{k}"), f"p-f{k}", sc.foreign_mac(k), str(dev.address), ifname="eth0")
        for kind, k, address, mac in self._service_hosts():
            self._plug(self._service_ns(kind, k), f"p-{kind}{k}", mac, f"{address}/{prefix}",
                       gateway=str(sc.lan.router))
        self.set_loss(sc.switch.loss_percent)
        self._start_dnsmasq(rt, "dnsmasq", sc.lan.dhcp_range, sc.lan.router, authoritative=True)
        for k, spec in enumerate(sc.rogue_dhcp, start=1):
            where = self._dhcp_router(k) or self._dhcp_ns(k)
            self._start_dnsmasq(where, f"rogue{k}", spec.range, spec.router or spec.address, authoritative=False)
        if sc.router.snmp != "off":
            self._start_snmpd(rt, lab_secrets)
        self._start_log_servers(lab_secrets)
        # Both daemons set up their namespaces at the same time (two cores); each then says it is ready.
        terminals = self._start_terminals(live)
        services = self._start_services(live)
        self._await_ready(terminals, "terminals")
        if services is not None:
            self._await_ready(services, "services")

    @property
    def staged_profile(self) -> Path:
        """The venue profile as staged for this lab, its secrets beside it (see stage_profile)."""
        return self.state_dir / "profile" / self.scenario.profile_path.name

    @property
    def home_netns(self) -> str:
        """Where the lab's Python daemons live: a namespace with only ``lo``.

        They enter the devices' namespaces to work, so their home only has
        to hold nothing of the café. Not the switch: scapy reads every
        interface when it is imported, and the switch of 1,000 terminals has
        1,000 ports (that import took 10 of the 15 s of building ``big``).
        """
        return self.nsname("home")

    def _dhcp_ns(self, k: int) -> str:
        return self.nsname(f"d{k}")

    def _dhcp_router(self, k: int) -> str | None:
        """The namespace of the extra router a rogue DHCP server runs in, if it shares that router's address."""
        address = self.scenario.rogue_dhcp[k - 1].address
        for j, r in enumerate(self.scenario.routers, start=1):
            if r.address == address:
                return self.nsname(f"r{j}")
        return None

    def _plug(self, netns: str, port: str, mac: str, address: str, ifname: str = "lan0",
              gateway: str | None = None) -> None:
        """Plug a device namespace into the switch with one address (and a default route, if given)."""
        ns.ip_batch([f"link add {port} type veth peer name {ifname} address {mac} netns {netns}",
                     f"link set {port} master br0 up"], netns=self.nsname("sw"))
        ns.ip_batch(["link set lo up", f"link set {ifname} up", f"addr add {address} dev {ifname}"]
                    + ([f"route add default via {gateway}"] if gateway else []), netns=netns)

    def _service_hosts(self) -> list[tuple[str, int, str, str]]:
        """(kind, k, address, MAC) of every billing server ("b"), audit server ("a"), camera ("c") and
        log server ("l")."""
        sc = self.scenario
        return ([("b", k, str(b.address), sc.billing_mac(k)) for k, b in enumerate(sc.billing, start=1)]
                + [("a", k, str(a.address), sc.audit_mac(k)) for k, a in enumerate(sc.audit, start=1)]
                + [("c", k, str(c.address), sc.camera_mac(k)) for k, c in enumerate(sc.cameras, start=1)]
                + [("l", k, str(s.address), sc.log_server_mac(k)) for k, s in enumerate(sc.log_servers, start=1)])

    def _service_ns(self, kind: str, k: int) -> str:
        return self.nsname(f"{kind}{k}")

    def _build_isp2(self) -> None:
        """The second ISP: a bridge for its customers' lines and a transit link to the first ISP's side.

        Both ISPs reach the external target (it lives on the first ISP's side,
        as one Internet address reachable over either line would).
        """
        sc, isp, isp2 = self.scenario, self.nsname("isp"), self.nsname("isp2")
        transit = sc.isp2.subnet.broadcast_address - 1
        with ns.inside(isp2):
            ns.sysctl("net.ipv4.ip_forward", 1)
        ns.ip_batch(["link set lo up", "link add wan type bridge", "link set wan up",
                     f"addr add {sc.isp2.gateway}/{sc.isp2.subnet.prefixlen} dev wan",
                     f"link add tr0 type veth peer name tr2 netns {isp}", "link set tr0 up",
                     f"addr add {transit}/32 dev tr0",
                     f"route add {sc.isp.subnet} via {sc.isp.gateway} dev tr0 onlink"], netns=isp2)
        ns.ip_batch(["link set tr2 up", f"route add {sc.isp2.subnet} via {transit} dev tr2 onlink"], netns=isp)

    def _build_router(self, k: int, address: object, isp_side: str, icmp: bool) -> None:
        """Extra router k: LAN side on the switch, NAT out to the main or the second ISP."""
        sc = self.scenario
        netns = self.nsname(f"r{k}")
        upstream = self.nsname("isp" if isp_side == "main" else "isp2")
        subnet = sc.isp.subnet if isp_side == "main" else sc.isp2.subnet
        gateway = sc.isp.gateway if isp_side == "main" else sc.isp2.gateway
        with ns.inside(netns):
            ns.sysctl("net.ipv4.ip_forward", 1)
        self._plug(netns, f"p-r{k}", sc.extra_router_mac(k), f"{address}/{sc.lan.subnet.prefixlen}")
        ns.ip_batch([f"link add wan0 type veth peer name w-r{k} netns {upstream}", "link set wan0 up",
                     f"addr add {sc.wan_address(k, isp_side)}/{subnet.prefixlen} dev wan0",  # type: ignore[arg-type]
                     f"route add default via {gateway}"], netns=netns)
        ns.ip_batch([f"link set w-r{k} master wan up"], netns=upstream)
        _nat(netns, icmp=icmp)

    def _tns(self, t: Terminal) -> str:
        return self.nsname(f"t{t.number}")

    def _start_dnsmasq(self, netns: str, what: str, dhcp_range: tuple, router: object, authoritative: bool) -> None:
        """A real dnsmasq serving DHCP only on ``lan0`` of ``netns`` (the legal server or a rogue one)."""
        sc = self.scenario
        lo, hi = dhcp_range
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--port=0", "--interface=lan0", "--bind-interfaces", "--user=root",
                f"--dhcp-range={lo},{hi},{sc.lan.subnet.netmask},12h",
                f"--dhcp-option=option:router,{router}",
                f"--dhcp-option=option:dns-server,{router}",
                f"--dhcp-leasefile={self.state_dir / f'{what}.leases'}",
                f"--pid-file={self.state_dir / f'{what}.pid'}",
                f"--log-facility={self.state_dir / f'{what}.log'}", "--log-dhcp"]
        if authoritative:
            argv.append("--dhcp-authoritative")
        proc, rec = ns.spawn(netns, argv, what, self.state_dir / f"{what}.out")
        self._record(rec)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise LabError(f"{what} exited: {(self.state_dir / f'{what}.out').read_text()[-500:]}")

    def _start_snmpd(self, rt: str, lab_secrets: dict[str, str]) -> None:
        """Debian's real snmpd on the router's LAN address (v2c community and a v3 authPriv user)."""
        sc = self.scenario
        config = snmpd.snmpd_config(sc.lan.router, lab_secrets["snmp.community"], SNMP_V3_USER,
                                    lab_secrets["snmp-v3.auth"], lab_secrets["snmp-v3.priv"])
        _, rec = snmpd.start_snmpd(rt, self.state_dir, config, sc.lan.router)
        self._record(rec)

    # -- log servers -------------------------------------------------------
    def _log_state(self, k: int) -> Path:
        """Log server k's sshd files: config, host key, PID file, log."""
        return self.state_dir / f"sshd{k}"

    def log_server_root(self, k: int) -> Path:
        """The directory log server k's SFTP users see as ``/`` (its chroot; the folders are under it)."""
        return Path(self._state["log_servers"][k - 1]["server_root"]) / "root"

    def _prepare_log_servers(self) -> tuple[dict[int, str], str | None]:
        """Before the profile is staged: the lab accounts, each server's own host key, its folders.

        Returns the host keys' public lines (for the profile's pins) and the
        password account's password (for the profile's password files). The
        logs are generated against the venue's day now, which the truth keeps.
        """
        servers = self.scenario.log_servers
        if not servers:
            return {}, None
        users = sshd.ensure_lab_users()
        today = logs.lab_today()
        self._state["log_servers"] = []
        host_keys: dict[int, str] = {}
        for k, server in enumerate(servers, start=1):
            state = self._log_state(k)
            state.mkdir(mode=0o700, exist_ok=True)
            host_keys[k] = sshd.make_host_key(state / "ssh_host_ed25519_key")
            # Recorded before it exists, so down removes it whatever happens next.
            base = sshd.SERVER_ROOTS / f"sshd-{self.id}-l{k}"
            self._state["log_servers"].append({"server_root": str(base), "host_key": host_keys[k]})
            self._save()
            sshd.new_server_root(f"{self.id}-l{k}")
            self._state["log_servers"][-1]["truth"] = logs.generate(base / "root", server, today)
            self._save()
        return host_keys, users.password_file.read_text().strip()

    def _start_log_servers(self, lab_secrets: dict[str, str]) -> None:
        """Debian's sshd on port 22 of each log server's LAN address: its own host key, SFTP only, chrooted."""
        for k, server in enumerate(self.scenario.log_servers, start=1):
            state, base = self._log_state(k), Path(self._state["log_servers"][k - 1]["server_root"])
            users = [u for u in (server.users.password, server.users.key) if u]
            if server.users.key:
                (base / "authorized_keys" / server.users.key).write_text(
                    lab_secrets[f"ssh{k}-{server.users.key}.pub"] + "\n")
            config = sshd.sshd_config(server.address, 22, state / "ssh_host_ed25519_key", base, users,
                                      state_dir=state)
            _, rec = sshd.start_sshd(self._service_ns("l", k), state, config)
            self._record(rec)

    def _start_terminals(self, live: list[Terminal]) -> subprocess.Popen:
        sc = self.scenario
        spec = {"terminals": [dict(netns=self._tns(t), number=t.number, name=t.name, address=str(t.address),
                                   prefixlen=sc.lan.subnet.prefixlen, gateway=str(sc.lan.router), mac=t.mac,
                                   netbios=t.netbios, icmp=t.icmp,
                                   dhcp_interval=sc.terminals.dhcp_interval if t.dhcp_name else None,
                                   firewall=t.firewall, tcp_open=[REALNAME.port] if t.realname else [])
                              for t in live],
                "chatter": [dict(netns=self.nsname(f"f{k}"), target=str(f.chatter_to), interval=f.interval)
                            for k, f in enumerate(sc.foreign, start=1) if f.chatter_to is not None]}
        spec_path = self.state_dir / "terminals.json"
        spec_path.write_text(json.dumps(spec))
        proc, rec = ns.spawn(self.home_netns, [sys.executable, "-m", "lab.terminals", str(spec_path)],
                             "terminals", self.state_dir / "terminals.log", stdout=subprocess.PIPE,
                             cwd=str(Path(__file__).resolve().parent.parent))
        self._record(rec)
        return proc

    def _start_services(self, live: list[Terminal]) -> subprocess.Popen | None:
        """The one daemon serving the servers, the cameras and the terminals' real-name clients."""
        sc = self.scenario
        servers = ([dict(netns=self._service_ns("b", k), address=str(b.address),
                         product=BILLING_PRODUCTS[b.product].key, running=b.running)
                    for k, b in enumerate(sc.billing, start=1)]
                   + [dict(netns=self._service_ns("a", k), address=str(a.address), product=AUDIT_PRODUCT.key,
                           running=a.running) for k, a in enumerate(sc.audit, start=1)])
        realname = [dict(netns=self._tns(t), address=str(t.address), seat=t.name) for t in live if t.realname]
        # Each entry is a lab.camera_sim.CameraSpec, plus the namespace it lives in.
        cameras = [dict(netns=self._service_ns("c", k), address=str(c.address), mac=sc.camera_mac(k), kind=c.kind,
                        vendor=c.vendor, onvif=c.onvif, rtsp=c.rtsp, model=sc.camera_model(k),
                        serial=sc.camera_serial(k), prefixlen=sc.lan.subnet.prefixlen, gateway=str(sc.lan.router))
                   for k, c in enumerate(sc.cameras, start=1)]
        if not (servers or realname or cameras):
            return None
        spec_path = self.state_dir / "services.json"
        spec_path.write_text(json.dumps({"stats": str(self.stats_path), "servers": servers, "realname": realname,
                                         "cameras": cameras}, ensure_ascii=False))
        proc, rec = ns.spawn(self.home_netns, [sys.executable, "-m", "lab.services", str(spec_path)],
                             "services", self.state_dir / "services.log", stdout=subprocess.PIPE,
                             cwd=str(Path(__file__).resolve().parent.parent))
        self._record(rec)
        return proc

    def _await_ready(self, proc: subprocess.Popen, what: str) -> None:
        line = proc.stdout.readline().decode() if proc.stdout else ""
        if not line.startswith("ready"):
            raise LabError(f"{what} daemon failed: " + (self.state_dir / f"{what}.log").read_text()[-800:])

    def _record(self, rec: ns.ProcRecord) -> None:
        self._state["processes"].append(rec.to_json())
        self._save()

    # -- while up ----------------------------------------------------------
    @property
    def stats_path(self) -> Path:
        """Where the services daemon writes its connection counts (see :meth:`service_stats`)."""
        return self.state_dir / "services-stats.json"

    def service_stats(self, reset: bool = False, timeout: float = 3.0) -> dict[str, Any]:
        """The services daemon's connection counts now: the most connections open at once, per listener and
        over all, since it started or since the last ``reset=True`` (which starts them afresh after reading).
        """
        rec = next((ns.ProcRecord(**r) for r in self._state["processes"] if r["what"] == "services"), None)
        if rec is None or not ns.is_running(rec):
            raise LabError("the services daemon is not running in this lab")
        before = self._stats_seq()
        os.kill(rec.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while self._stats_seq() <= before:
            if time.monotonic() > deadline:
                raise LabError(f"the services daemon wrote no counts within {timeout} s")
            time.sleep(0.02)
        stats = json.loads(self.stats_path.read_text())
        if reset:
            os.kill(rec.pid, signal.SIGUSR2)
        return stats

    def _stats_seq(self) -> int:
        try:
            return int(json.loads(self.stats_path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def set_loss(self, percent: float) -> None:
        """Drop this share of the frames the switch forwards, at random (no netem in this kernel)."""
        if not 0 <= percent < 100:
            raise LabError(f"loss must be 0 ≤ p < 100, got {percent}")
        ns.run_in(self.nsname("sw"), ["nft", "-f", "-"], stdin=self._switch_rules(percent))
        self._state["loss_percent"] = percent
        self._save()

    def _switch_rules(self, loss_percent: float) -> str:
        """The switch's nftables: ARP-request delivery like a NIC's, then random loss.

        A real switch floods every ARP request to every port, and each PC's
        own kernel drops the ones for other addresses. Here 1,000 such PCs
        share two cores, and that flood alone (1,000 copies of each request)
        would make every tool look slow; so a terminal's port only gets the
        requests for its own address. The probe's and the routers' ports still
        get every broadcast, so nothing the probe can see changes.
        """
        owners = ", ".join(f'"t{t.number}" . {t.address}' for t in self.terminals if t.power == "on")
        rules = "flush ruleset\n"
        if owners:
            rules += ("table bridge lab_arp {\n"
                      f" set owners {{ type ifname . ipv4_addr; elements = {{ {owners} }} }}\n"
                      " chain forward {\n  type filter hook forward priority -10;\n"
                      '  ether type arp arp operation request oifname "t*" oifname . arp daddr ip != @owners drop\n'
                      " }\n}\n")
        if loss_percent > 0:
            # Per output port, so a flooded broadcast is lost on some ports and not others.
            rules += ("table bridge lab_loss {\n chain forward {\n  type filter hook forward priority 0;\n"
                      f"  numgen random mod 10000 < {round(loss_percent * 100)} drop\n }}\n}}\n")
        return rules

    def set_probe_plugged(self, plugged: bool) -> None:
        """Plug the probe's cable into the café switch, or pull it: its port gains or loses carrier."""
        ns.ip_batch([f"link set p-probe {'up' if plugged else 'down'}"], netns=self.nsname("sw"))

    def set_officer_link(self, up: bool) -> None:
        """Bring the officer link up or down at the device's end (the probe's ``off0`` follows its carrier)."""
        if not self._state.get("officer_link"):
            raise LabError("this lab was built without an officer link (Lab(..., officer_link=True))")
        ns.ip_batch([f"link set dev0 {'up' if up else 'down'}"], netns=self.device_netns)

    def device_exec_argv(self, argv: list[str]) -> list[str]:
        """A command line that runs ``argv`` in the inspector device's namespace (venv tools found by name)."""
        if not self._state.get("officer_link"):
            raise LabError("this lab was built without an officer link (Lab(..., officer_link=True))")
        return ["ip", "netns", "exec", self.device_netns, *self.exec_argv(argv)[4:]]

    def exec_argv(self, argv: list[str]) -> list[str]:
        """A command line that runs ``argv`` in the probe's namespace (venv tools found by name)."""
        venv_bin = Path(sys.executable).parent
        if argv and "/" not in argv[0] and (venv_bin / argv[0]).exists():
            argv = [str(venv_bin / argv[0]), *argv[1:]]
        return ["ip", "netns", "exec", self.probe_netns, *argv]

    def truth(self) -> dict[str, Any]:
        """The ground truth of what was built, as JSON-ready data."""
        sc = self.scenario
        routers = [{"address": str(r.address), "mac": sc.extra_router_mac(k), "isp": r.isp, "icmp": r.icmp,
                    "wan": str(sc.wan_address(k, r.isp)),
                    "egress": str(sc.isp.gateway if r.isp == "main" else sc.isp2.gateway)}
                   for k, r in enumerate(sc.routers, start=1)]
        router_macs = {r["address"]: r["mac"] for r in routers}
        rogue = [{"address": str(d.address), "mac": router_macs.get(str(d.address), sc.rogue_dhcp_mac(k)),
                  "range": [str(a) for a in d.range], "router": str(d.router or d.address),
                  "in_router": str(d.address) in router_macs}
                 for k, d in enumerate(sc.rogue_dhcp, start=1)]
        billing = [{"address": str(b.address), "mac": sc.billing_mac(k), "product": BILLING_PRODUCTS[b.product].key,
                    "name": BILLING_PRODUCTS[b.product].name, "port": BILLING_PRODUCTS[b.product].port,
                    "running": b.running} for k, b in enumerate(sc.billing, start=1)]
        audit = [{"address": str(a.address), "mac": sc.audit_mac(k), "product": AUDIT_PRODUCT.key,
                  "name": AUDIT_PRODUCT.name, "port": AUDIT_PRODUCT.port, "running": a.running}
                 for k, a in enumerate(sc.audit, start=1)]
        cameras = [{"address": str(c.address), "mac": sc.camera_mac(k), "kind": c.kind, "vendor": c.vendor,
                    "onvif": c.onvif, "rtsp": c.rtsp, "model": sc.camera_model(k), "serial": sc.camera_serial(k)}
                   for k, c in enumerate(sc.cameras, start=1)]
        live = [t for t in self.terminals if t.power == "on"]
        log_servers = self._log_truth()
        return {
            "scenario": sc.name,
            "lab_id": self.id,
            "profile": str(self.staged_profile),
            "loss_percent": self._state.get("loss_percent", sc.switch.loss_percent),
            "probe": {"netns": self.probe_netns, "interface": PROBE_IFACE, "address": str(sc.lan.probe),
                      "prefixlen": sc.lan.subnet.prefixlen, "mac": self.probe_mac,
                      "addressed": self._state.get("probe_addressed", True),
                      "officer_link": ({"interface": OFFICER_IFACE, "address": OFFICER_PROBE_ADDRESS,
                                        "device_netns": self.device_netns, "device_address": OFFICER_DEVICE_ADDRESS}
                                       if self._state.get("officer_link") else None)},
            "lan": {"subnet": str(sc.lan.subnet),
                    "router": {"address": str(sc.lan.router), "mac": sc.router_mac(), "snmp": sc.router.snmp,
                               "second_wan": sc.router.second_wan, "icmp": sc.router.icmp,
                               "egress": str(sc.isp.gateway)},
                    "dhcp_range": [str(a) for a in sc.lan.dhcp_range]},
            "isp": {"subnet": str(sc.isp.subnet), "router_wan": str(sc.isp.router_wan),
                    "hosts": [str(h) for h in sc.isp.hosts]},
            "isp2": {"subnet": str(sc.isp2.subnet), "gateway": str(sc.isp2.gateway)} if sc.uses_isp2 else None,
            "routers": routers,
            "rogue_dhcp": rogue,
            "foreign": [{"address": str(f.address.ip), "mac": sc.foreign_mac(k), "chatty": f.chatter_to is not None}
                        for k, f in enumerate(sc.foreign, start=1)],
            "terminals": [{**t.model_dump(mode="json"), "mismatch": t.mismatch} for t in self.terminals],
            "billing": billing,
            "audit": audit,
            "cameras": cameras,
            "log_servers": log_servers,
            "logs_today": log_servers[0]["today"] if log_servers else None,
            "realname": {"product": REALNAME.key, "name": REALNAME.name, "port": REALNAME.port},
            "realname_missing": [str(t.address) for t in live if not t.realname],
            "services_stats": str(self.stats_path),
            "live_hosts": [{"address": str(sc.lan.router), "mac": sc.router_mac(), "role": "router"}]
                          + [{"address": r["address"], "mac": r["mac"], "role": "extra_router"} for r in routers]
                          + [{"address": d["address"], "mac": d["mac"], "role": "rogue_dhcp"}
                             for d in rogue if not d["in_router"]]
                          + [{"address": b["address"], "mac": b["mac"], "role": "billing"} for b in billing]
                          + [{"address": a["address"], "mac": a["mac"], "role": "audit"} for a in audit]
                          + [{"address": c["address"], "mac": c["mac"], "role": c["kind"]} for c in cameras]
                          + [{"address": s["address"], "mac": s["mac"], "role": "log_server"} for s in log_servers]
                          + [{"address": str(t.address), "mac": t.mac, "role": "terminal", "number": t.number}
                             for t in live],
        }


    def _log_truth(self) -> list[dict[str, Any]]:
        """Per log server: address, MAC, users, its host key and whether the profile pins it, where its
        tree is, and lab/logs.py's truth (the day used, each folder's oldest, newest, gaps and files)."""
        built = self._state.get("log_servers", [])
        rows = []
        for k, (server, state) in enumerate(zip(self.scenario.log_servers, built), start=1):
            truth = state.get("truth", {})
            rows.append({"address": str(server.address), "mac": self.scenario.log_server_mac(k), "port": 22,
                         "users": server.users.model_dump(), "host_key": state["host_key"],
                         "host_key_pinned": server.host_key == "match",
                         "root": str(Path(state["server_root"]) / "root"),
                         "today": truth.get("today"), "folders": truth.get("folders", [])})
        return rows


def _nat(netns: str, icmp: bool) -> None:
    """Masquerade everything leaving a router's WAN lines; optionally drop every ICMP it would send.

    ICMP errors for forwarded packets (time-exceeded) are locally generated,
    so they pass the output hook: dropping there makes a router that forwards
    but never tells, as many consumer routers are set up.
    """
    rules = ("table ip lab_nat {\n chain postrouting {\n  type nat hook postrouting priority 100;\n"
             '  oifname "wan*" masquerade\n }\n}\n')
    if not icmp:
        rules += ("table ip lab_icmp {\n chain output {\n  type filter hook output priority 0;\n"
                  "  meta l4proto icmp drop\n }\n}\n")
    ns.run_in(netns, ["nft", "-f", "-"], stdin=rules)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def running(scenario: str | Scenario, lab_id: str = "cafe", loss: float | None = None, **options: bool) -> Iterator[Lab]:
    """A lab that is up for the block and torn down after it, whatever happens (``options``: see :class:`Lab`)."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if loss is not None:
        sc.switch.loss_percent = loss
    lab = Lab(sc, lab_id, **options)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()
