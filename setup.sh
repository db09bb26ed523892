#!/usr/bin/env bash
# Set up cafe-probe on Debian 12 as root, then run the demo or the tests.
#
#   bash setup.sh demo [SCENARIO]   install, then run the probe in the lab café (default: messy)
#   bash setup.sh test [PYTEST ARGS]  install, then run the whole test suite
#   bash setup.sh install            install only
#   bash setup.sh probe HARDWARE     install, then the probe's autorun service for HARDWARE (pi4 | pi5 |
#                                    laptop): systemd unit, hardware profile, LED udev rule, service user
#
# Installs the Debian packages the lab and the probe use, a virtualenv in
# .venv with the project and its Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

# Arguments first: a wrong one must stop the script before anything is installed.
hardware_names() { (cd hardware/profiles && ls -- *.yaml) | sed 's/\.yaml$//' | paste -sd' ' -; }
case "${1:-install}" in
  demo | test | install) ;;
  probe)
    if [ -z "${2:-}" ] || [[ ! "$2" =~ ^[a-z0-9-]+$ ]] || [ ! -f "hardware/profiles/$2.yaml" ]; then
      echo "setup.sh: usage: bash setup.sh probe HARDWARE (one of: $(hardware_names))" >&2
      exit 2
    fi ;;
  *) echo "setup.sh: unknown action '$1' (demo | test | install | probe HARDWARE)" >&2; exit 2 ;;
esac

APT_PACKAGES=(
  iproute2        # ip netns, veth, bridge: the lab café
  nftables        # lab: NAT on the router, frame loss on the switch
  dnsmasq-base    # lab: the café router's real DHCP server, and the rogue ones
  openssh-server  # lab: the café log servers' real sshd (SFTP, read-only), read by probe/net/ssh.py
  snmpd           # lab: the router's real SNMP agent (Net-SNMP; v2c and v3), read by probe/net/snmp.py
  postgresql      # the department server's database; tests run the agent on a private cluster (tests/pgkit.py)
  arp-scan nmap   # peers measured by bench/discovery.py
  tcpdump         # reading capture.pcap
  ieee-data       # MAC vendor names (OUI registry)
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0  # WeasyPrint: the case-file PDF
  fonts-noto-cjk  # Chinese glyphs in the PDF and the web UI
  poppler-utils   # pdftotext / pdftoppm: tests read the PDF back
  chromium        # the browser test drives Debian's Chromium (never a downloaded one)
  python3 python3-venv python3-pip
  ca-certificates
)
# A probe in the field (Raspberry Pi, laptop) needs none of the lab, the department server or the browser
# tests: only what the probe itself runs on.
PROBE_PACKAGES=(iproute2 ieee-data tcpdump python3 python3-venv python3-pip ca-certificates)
if [ "${1:-install}" = probe ]; then
  APT_PACKAGES=("${PROBE_PACKAGES[@]}")
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (the lab creates network namespaces; packages are installed with apt-get)" >&2
  exit 2
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  # The lab runs its own sshd and snmpd inside namespaces only, the tests their own PostgreSQL on loopback. Installing the packages must not
  # start the system's daemons on this machine's real interfaces: deny service starts meanwhile
  # (policy-rc.d, unless the machine has its own) and keep the ones installed here from starting at boot.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { [ $own_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ $own_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null; then
    for pkg in "${missing[@]}"; do
      case "$pkg" in
        openssh-server) systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true ;;
        snmpd) systemctl disable snmpd.service >/dev/null 2>&1 || true ;;
        postgresql) systemctl disable postgresql.service >/dev/null 2>&1 || true ;;
      esac
    done
  fi
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup.sh: $PYTHON is older than 3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "== python venv .venv"
  "$PYTHON" -m venv .venv
fi
extras='[test]'
[ "${1:-install}" = probe ] && extras=''  # no pytest or Playwright on a probe
echo "== pip install -e .$extras"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"

what=${1:-install}
[ $# -gt 0 ] && shift
case "$what" in
  demo)    exec .venv/bin/cafe-lab demo "${1:-messy}" ;;
  test)    exec .venv/bin/python -m pytest "$@" ;;
  install) echo "== installed: .venv/bin/cafe-probe, .venv/bin/cafe-lab, .venv/bin/cafe-agent" ;;
  probe)   hw=$1; shift
           echo "== cafe-probe install --hardware $hw"
           exec .venv/bin/cafe-probe install --hardware "$hw" --venv "$PWD/.venv" "$@" ;;
esac
