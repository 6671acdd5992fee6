#!/usr/bin/env bash
# Provisioning, step 2 of 2, for one Vagrant VM of the lab: systemd units for
# etcd (on the etcd hosts), the agent's network half, dockerd from the lease, the
# agent's services half and the DNS server, in the local lab's order:
#
#   etcd -> discovery-agent-network (lease, /run/flannel/subnet.env, VXLAN)
#        -> docker (daemon.json from the lease: bip, mtu, dns at the bridge address,
#                   search service.lab)
#        -> discovery-agent-services -> discovery-dns (bridge address, port 53)
#
# The units are rendered by labs/vm_provision.py (one code path, unit-tested).
#
#   labs/provision/host.sh --host-name host1 --ip 192.168.56.11 \
#       --etcd-members etcd1=192.168.56.11,etcd2=192.168.56.12,etcd3=192.168.56.13 \
#       [--lab-hosts host1=192.168.56.11,host2=192.168.56.12,...] \
#       [--ssh-key /tmp/discovery-lab-ssh/id_ed25519] [--docker-certs /tmp/discovery-lab-docker] \
#       [--etcd-certs /tmp/discovery-lab-etcd] [--set-up-etcd] [--render-only]
#
# --lab-hosts: every host of the lab, written to /etc/discovery/lab.toml, so that
#   `discoveryctl lab ip|url|env|exec|check` work on this VM (default: this host).
# --ssh-key: the lab's key pair (made by the Vagrantfile on the machine running
#   vagrant): root on every VM accepts it and uses it to reach the others.
# --docker-certs DIR: this host's Docker TLS files, made by the Vagrantfile on the machine
#   running vagrant (labs/provision/lab_certs.rb): ca.pem, server.pem, server-key.pem
#   for dockerd (/etc/docker/discovery-lab-tls), ca.pem, cert.pem, key.pem for the learner
#   (/etc/discovery/docker-certs, DOCKER_CERT_PATH). dockerd then also listens on
#   tcp://IP:2376 with --tlsverify, as Docker Machine's hosts did.
# --etcd-certs DIR: this host's etcd TLS files, made by the Vagrantfile with the same CA:
#   ca.pem, its member's etcdN.pem and etcdN-key.pem (on an etcd host) and each component's
#   NAME.pem and NAME-key.pem, installed root only into /etc/discovery/etcd-certs. etcd
#   serves clients and peers over TLS only and demands certificates from the lab's CA;
#   each unit shows its own, whose Common Name is its etcd user (labs/etcd_tls.py).
# --set-up-etcd: this host, as etcd's root (root.pem), creates every component's etcd
#   user and role, turns authentication on and writes flannel's network config (the
#   Vagrantfile gives it to the last etcd host, when etcd can have quorum); idempotent.
# --render-only: find the interface and write the files, start nothing (tests).
# LAB_VENV (default /opt/discovery-venv) and LAB_ETC (default /etc) move things.
set -euo pipefail
venv=${LAB_VENV:-/opt/discovery-venv}
etc=${LAB_ETC:-/etc}
py="$venv/bin/python"
name="" ip="" members="" lab_hosts="" ssh_key="" docker_certs="" etcd_certs="" set_up_etcd=no
render_only=no

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --host-name) name=${2:?}; shift 2 ;;
        --ip) ip=${2:?}; shift 2 ;;
        --etcd-members) members=${2:?}; shift 2 ;;
        --lab-hosts) lab_hosts=${2:?}; shift 2 ;;
        --ssh-key) ssh_key=${2:?}; shift 2 ;;
        --docker-certs) docker_certs=${2:?}; shift 2 ;;
        --etcd-certs) etcd_certs=${2:?}; shift 2 ;;
        --set-up-etcd) set_up_etcd=yes; shift ;;
        --render-only) render_only=yes; shift ;;
        *) usage ;;
    esac
done
if [ -z "$name" ] || [ -z "$ip" ] || [ -z "$members" ]; then usage; fi

# By address, never by name: the first NIC of a VirtualBox VM is NAT, 10.0.2.15 on every VM.
iface=$("$py" -m labs.vm_provision iface --address "$ip")
echo "provision: $name: private network $ip is on $iface"
tls_flag=()
[ -n "$docker_certs" ] && tls_flag=(--docker-tls)
"$py" -m labs.vm_provision render --host-name "$name" --ip "$ip" --iface "$iface" \
    --etcd-members "$members" --lab-hosts "$lab_hosts" --venv "$venv" --root "$etc" \
    "${tls_flag[@]}"
[ "$render_only" = yes ] && exit 0

if [ -n "$docker_certs" ]; then
    # Root only, as docker-machine keeps them: a key is root on every lab daemon.
    server_dir="$etc/docker/discovery-lab-tls" client_dir="$etc/discovery/docker-certs"
    install -d -m 700 "$server_dir" "$client_dir"
    install -m 644 "$docker_certs/ca.pem" "$docker_certs/server.pem" "$server_dir/"
    install -m 600 "$docker_certs/server-key.pem" "$server_dir/"
    install -m 644 "$docker_certs/ca.pem" "$docker_certs/cert.pem" "$client_dir/"
    install -m 600 "$docker_certs/key.pem" "$client_dir/"
    rm -rf "$docker_certs"
    echo "provision: $name: dockerd on tcp://$ip:2376 with TLS (DOCKER_CERT_PATH=$client_dir)"
fi

etcd_dir="$etc/discovery/etcd-certs"
if [ -n "$etcd_certs" ]; then
    # Root only: a key is an etcd user (root.pem's is etcd's root, on the set-up host only).
    install -d -m 700 "$etcd_dir"
    for file in "$etcd_certs"/*.pem; do
        case "$file" in
            *-key.pem) install -m 600 "$file" "$etcd_dir/" ;;
            *) install -m 644 "$file" "$etcd_dir/" ;;
        esac
    done
    rm -rf "$etcd_certs"
    echo "provision: $name: etcd's TLS files in $etcd_dir ($(cd "$etcd_dir" && echo ./*.pem))"
fi

if [ -n "$ssh_key" ]; then
    # Root logs in to every VM with the lab's key (sshd's default allows keys for root).
    install -d -m 700 "$etc/discovery/ssh" /root/.ssh
    install -m 600 "$ssh_key" "$etc/discovery/ssh/id_ed25519"
    install -m 644 "$ssh_key.pub" "$etc/discovery/ssh/id_ed25519.pub"
    touch /root/.ssh/authorized_keys
    grep -qxF "$(cat "$ssh_key.pub")" /root/.ssh/authorized_keys ||
        cat "$ssh_key.pub" >> /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
    rm -f "$ssh_key" "$ssh_key.pub"
fi
# Where the exercises keep what they record (exercise 06's capture), as in the local lab.
install -d -m 755 /var/lib/discovery-lab/lab

units=(discovery-agent-network.service docker.service discovery-agent-services.service
       discovery-dns.service discovery-lab-images.service)
[ -f "$etc/systemd/system/discovery-etcd.service" ] && units=(discovery-etcd.service "${units[@]}")

systemctl daemon-reload
# docker.io started dockerd at install with its own 172.17.0.1/16 bridge. Stop it and
# delete that bridge, so the lease's bip takes its place (as flannel's guides do).
if [ ! -f /run/discovery-lab/daemon.json ]; then
    systemctl stop docker.socket docker.service || true
    ip link delete docker0 2>/dev/null || true
fi
systemctl enable "${units[@]}"
# --no-block: with three etcd members, etcd has no quorum until host2 is up, and the
# chain waits on it; the units keep retrying (Restart=always) until it has.
for unit in "${units[@]}"; do
    systemctl restart --no-block "$unit"
done

endpoints=$(echo "$members" | sed -E 's|[A-Za-z0-9]+=([0-9.]+)|https://\1:2379|g')
if [ "$set_up_etcd" = yes ]; then
    # As etcd's root, by certificate (root.pem's Common Name is the etcd user): the users
    # and roles of labs/etcd_tls.py, auth enable, flannel's network config. Again on a
    # re-provision: what is there already is kept.
    echo "provision: waiting for etcd ($endpoints) to set it up"
    "$py" -m labs.vm_provision set-up-etcd --endpoints "$endpoints" --cert-dir "$etcd_dir" \
        --wait 240
fi

# Bounded wait for the DNS server, which comes last; not fatal (etcd may lack quorum yet).
for _ in $(seq 60); do
    if [ -f /run/discovery-lab/host.env ]; then
        listen=$(sed -n 's/^LAB_DNS_LISTEN=//p' /run/discovery-lab/host.env)
        if dig +time=1 +tries=1 +short "@${listen%:*}" lab SOA 2>/dev/null | grep -q .; then
            echo "provision: $name is up: lease $(sed -n 's/^FLANNEL_SUBNET=//p' /run/flannel/subnet.env), DNS on $listen"
            exit 0
        fi
    fi
    sleep 2
done
echo "provision: $name is not up yet; it will come up once etcd has quorum" \
     "(systemctl status ${units[*]})"
