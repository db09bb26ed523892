#!/usr/bin/env bash
# Set up cafe-probe on Debian 12 as root, then run the demo or the tests.
#
#   bash setup.sh demo [SCENARIO]   install, then run the probe in the lab café (default: messy)
#   bash setup.sh test [PYTEST ARGS]  install, then run the whole test suite
#   bash setup.sh install            install only
#
# Installs the Debian packages the lab and the probe use, a virtualenv in
# .venv with the project and its Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

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
echo "== pip install -e .[test]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

what=${1:-install}
[ $# -gt 0 ] && shift
case "$what" in
  demo)    exec .venv/bin/cafe-lab demo "${1:-messy}" ;;
  test)    exec .venv/bin/python -m pytest "$@" ;;
  install) echo "== installed: .venv/bin/cafe-probe, .venv/bin/cafe-lab, .venv/bin/cafe-agent" ;;
  *)       echo "setup.sh: unknown action '$what' (demo | test | install)" >&2; exit 2 ;;
esac
