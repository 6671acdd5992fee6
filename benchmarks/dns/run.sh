#!/usr/bin/env bash
# DNS benchmark of issue 4 (not part of the test command): discovery-dns against
# Knot DNS serving the same records, with dnsperf, all on 127.0.0.1.
#
#   benchmarks/dns/run.sh [--duration 10] [--out /tmp/dns-bench/report.md]
#
# Installs dnsperf and knot from Debian when missing (idempotent), then runs
# bench.py, which starts its own etcd, discovery-dns and knotd on free loopback
# ports and stops them when done. Takes about three minutes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

missing=()
for pkg in dnsperf knot bind9-dnsutils; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: needs these Debian packages, and root to install them: ${missing[*]}" >&2
        exit 1
    fi
    echo "run.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || scripts/bootstrap
exec .venv/bin/python -m benchmarks.dns.bench "$@"
