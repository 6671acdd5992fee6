#!/usr/bin/env bash
# Overlay benchmark of issue 5 (not part of the test command): subnet lease ->
# kernel entries on every host, over 3 and 20 namespace hosts, and TCP
# throughput over the VXLAN against the same hosts' underlay (iperf3).
#
#   sudo benchmarks/overlay/run.sh [--sizes 3,20] [--trials 50] [--iperf-duration 5]
#                                  [--rounds 5] [--out /tmp/overlay-bench/report.md]
#
# Needs root (namespaces, a bridge, iptables). Installs iperf3 from Debian when
# missing (idempotent). Everything it creates is named ovb<size>* and removed
# at the end; traffic stays inside those namespaces. Takes about three minutes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: needs root (network namespaces, bridge, iptables)" >&2
    exit 1
fi
missing=()
for pkg in iperf3 busybox-static; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || scripts/bootstrap
exec .venv/bin/python -m benchmarks.overlay.bench "$@"
