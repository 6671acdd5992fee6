"""flannel's etcd layout: the overlay network config and the per-host subnet leases.

The keys and JSON are flannel's own, so anyone who knows flannel recognises
them and flannel's tools read them::

    /coreos.com/network/config
        {"Network": "10.5.0.0/16", "SubnetLen": 24,
         "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    /coreos.com/network/subnets/10.5.1.0-24        (under the host's etcd lease)
        {"PublicIP": "192.168.100.11", "BackendType": "vxlan",
         "BackendData": {"VNI": 1, "VtepMAC": "7a:1b:..."}}

Defaults and checks follow flannel's (pkg/subnet/config.go): SubnetLen 24
when the Network is a /22 or larger, else the Network's length + 2; SubnetMin
the second subnet (the first is never leased), SubnetMax the last one.
``screen_subnet_leases`` decides which leases may reach the kernel. Pure: parsing,
encoding, checking, and the arithmetic the defaults need.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from discovery.errors import SchemaError
from discovery.jsonvalue import load_json_object

DEFAULT_VNI = 1
DEFAULT_VXLAN_PORT = 8472
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def config_key(network_prefix: str) -> str:
    return network_prefix.rstrip("/") + "/config"


def subnets_prefix(network_prefix: str) -> str:
    return network_prefix.rstrip("/") + "/subnets/"


def subnet_key(network_prefix: str, subnet: ipaddress.IPv4Network) -> str:
    """10.5.1.0/24 -> <prefix>/subnets/10.5.1.0-24 (flannel's spelling)."""
    return f"{subnets_prefix(network_prefix)}{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key(network_prefix: str, key: str) -> ipaddress.IPv4Network:
    prefix = subnets_prefix(network_prefix)
    if not key.startswith(prefix):
        raise SchemaError(f"key {key!r} is not under {prefix!r}")
    text = key[len(prefix) :]
    address, sep, length = text.rpartition("-")
    if not sep or not length.isdigit():
        raise SchemaError(f"subnet key {text!r}: expected <a.b.c.d>-<prefix length>")
    if int(length) > 32:
        raise SchemaError(f"subnet key {text!r}: prefix length {length} is over 32")
    try:
        return ipaddress.IPv4Network(f"{address}/{length}")
    except ValueError as error:
        raise SchemaError(f"subnet key {text!r}: {error}") from error


@dataclass(frozen=True)
class NetworkConfig:
    network: ipaddress.IPv4Network
    subnet_len: int
    subnet_min: ipaddress.IPv4Network
    subnet_max: ipaddress.IPv4Network
    backend_type: str = "vxlan"
    vni: int = DEFAULT_VNI
    port: int = DEFAULT_VXLAN_PORT


def _field(data: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    if name not in data or data[name] is None:
        if default is None:
            raise SchemaError(f"network config: {name} is missing")
        return default
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SchemaError(
            f"network config: {name} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _network_field(data: dict[str, Any], name: str, length: int | None = None) -> Any:
    text = _field(data, name, str)
    try:
        if length is None:
            return ipaddress.IPv4Network(text)
        return ipaddress.IPv4Network(f"{text.split('/')[0]}/{length}")
    except ValueError as error:
        raise SchemaError(f"network config: {name} {text!r}: {error}") from error


def default_subnet_len(network: ipaddress.IPv4Network) -> int:
    """flannel's rule: a /24 per host when the Network is a /22 or larger, else a
    quarter of the Network (the first subnet is never leased, so four is the
    fewest that leaves more than two)."""
    return 24 if network.prefixlen <= 22 else network.prefixlen + 2


def parse_network_config(raw: bytes | str) -> NetworkConfig:
    """flannel's config, with flannel's defaults and checks (pkg/subnet/config.go)."""
    data = load_json_object(raw, "network config")
    network = _network_field(data, "Network")
    if data.get("SubnetLen") not in (None, 0) or data.get("SubnetLen") is False:
        subnet_len = _field(data, "SubnetLen", int)
        if subnet_len > 30:
            raise SchemaError(f"network config: SubnetLen {subnet_len} must be at most 30")
        if subnet_len < network.prefixlen + 2:
            raise SchemaError(
                f"network config: SubnetLen {subnet_len} leaves fewer than four subnets in "
                f"Network {network}; use /{network.prefixlen + 2} or longer"
            )
    else:
        if network.prefixlen > 28:
            raise SchemaError(
                f"network config: Network {network} is too small; the smallest is a /28"
            )
        subnet_len = default_subnet_len(network)
    subnet_size = 2 ** (32 - subnet_len)
    # flannel never leases the first subnet: its network address would be the
    # Network's own, which some tools take for the whole Network.
    first = ipaddress.IPv4Network(f"{network.network_address + subnet_size}/{subnet_len}")
    last = ipaddress.IPv4Network(
        f"{network.network_address + network.num_addresses - subnet_size}/{subnet_len}"
    )
    subnet_min = _network_field(data, "SubnetMin", subnet_len) if "SubnetMin" in data else first
    subnet_max = _network_field(data, "SubnetMax", subnet_len) if "SubnetMax" in data else last
    for name, subnet in (("SubnetMin", subnet_min), ("SubnetMax", subnet_max)):
        if not subnet.subnet_of(network):
            raise SchemaError(f"network config: {name} {subnet} is outside Network {network}")
    if subnet_min.network_address > subnet_max.network_address:
        raise SchemaError(f"network config: SubnetMin {subnet_min} is above SubnetMax {subnet_max}")
    backend = data.get("Backend", {"Type": "vxlan"})
    if not isinstance(backend, dict):
        raise SchemaError("network config: Backend must be a JSON object")
    backend_type = backend.get("Type", "vxlan")
    if backend_type != "vxlan":
        raise SchemaError(f"network config: Backend.Type {backend_type!r} is not supported (vxlan)")
    vni = backend.get("VNI", DEFAULT_VNI)
    port = backend.get("Port", DEFAULT_VXLAN_PORT)
    for name, value, high in (("VNI", vni, 2**24 - 1), ("Port", port, 65535)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= high:
            raise SchemaError(f"network config: Backend.{name} must be 1..{high}, got {value!r}")
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, backend_type, vni, port)


def encode_network_config(config: NetworkConfig) -> bytes:
    data = {
        "Network": str(config.network),
        "SubnetLen": config.subnet_len,
        "SubnetMin": str(config.subnet_min.network_address),
        "SubnetMax": str(config.subnet_max.network_address),
        "Backend": {"Type": config.backend_type, "VNI": config.vni, "Port": config.port},
    }
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SubnetLease:
    """One host's claim on one subnet; lives as long as the host's etcd lease."""

    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    vtep_mac: str
    vni: int = DEFAULT_VNI
    backend_type: str = "vxlan"


def encode_subnet_lease(lease: SubnetLease) -> bytes:
    data = {
        "PublicIP": str(lease.public_ip),
        "BackendType": lease.backend_type,
        "BackendData": {"VNI": lease.vni, "VtepMAC": lease.vtep_mac},
    }
    return json.dumps(data, separators=(",", ":")).encode()


def _shown(value: Any, limit: int = 40) -> str:
    """A value for an error message: repr, cut short (values come from anyone)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_subnet_lease(network_prefix: str, key: str, raw: bytes | str) -> SubnetLease:
    """A lease as written: well-formed key and fields. Whether it fits the
    network config, and the other leases, is ``screen_subnet_leases``'s question."""
    subnet = parse_subnet_key(network_prefix, key)
    data = load_json_object(raw, f"lease {subnet}")
    text = data.get("PublicIP")
    try:
        if not isinstance(text, str):
            raise ValueError("not a string")
        public_ip = ipaddress.IPv4Address(text)
    except ValueError as error:
        raise SchemaError(f"lease {subnet}: PublicIP {_shown(text)} is invalid") from error
    backend_data = data.get("BackendData")
    if not isinstance(backend_data, dict):
        raise SchemaError(f"lease {subnet}: BackendData must be a JSON object")
    mac = backend_data.get("VtepMAC")
    if not isinstance(mac, str) or not _MAC_RE.match(mac.lower()):
        raise SchemaError(f"lease {subnet}: BackendData.VtepMAC {_shown(mac)} is not a MAC address")
    vni = backend_data.get("VNI", DEFAULT_VNI)
    if isinstance(vni, bool) or not isinstance(vni, int) or not 0 < vni < 2**24:
        raise SchemaError(f"lease {subnet}: BackendData.VNI must be an integer 1..16777215")
    backend_type = data.get("BackendType", "vxlan")
    if not isinstance(backend_type, str):
        raise SchemaError(f"lease {subnet}: BackendType must be a string")
    return SubnetLease(subnet, public_ip, mac.lower(), vni, backend_type[:32])


# Addresses no host can send VXLAN from: "this network", loopback, multicast,
# and the reserved block with the limited broadcast address.
_NOT_UNICAST = tuple(
    ipaddress.IPv4Network(text)
    for text in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")
)


def subnet_lease_problem(config: NetworkConfig, lease: SubnetLease) -> str | None:
    """Why this lease must not be programmed under ``config``, or None if it may.

    The key already parsed as an aligned network (``parse_subnet_key``); here
    it must also be one subnet of the Network, of SubnetLen, and carry a
    PublicIP and VtepMAC a real host could have, on this backend and VNI.
    """
    subnet = lease.subnet
    if not subnet.subnet_of(config.network):
        return f"subnet {subnet} is outside Network {config.network}"
    if subnet.prefixlen != config.subnet_len:
        return f"subnet {subnet} is not a /{config.subnet_len} (the config's SubnetLen)"
    if lease.backend_type != config.backend_type:
        return f"BackendType {_shown(lease.backend_type)} is not {config.backend_type!r}"
    if lease.vni != config.vni:
        return f"VNI {lease.vni} is not the config's VNI {config.vni}"
    ip = lease.public_ip
    if any(ip in block for block in _NOT_UNICAST):
        return f"PublicIP {ip} is not a unicast host address"
    if ip in config.network:
        return f"PublicIP {ip} lies inside the overlay Network {config.network}"
    first_octet = int(lease.vtep_mac[:2], 16)
    if first_octet & 1 or lease.vtep_mac == "00:00:00:00:00:00":
        return f"VtepMAC {lease.vtep_mac} is not a unicast MAC address"
    return None


def screen_subnet_leases(
    config: NetworkConfig, leases: Mapping[str, SubnetLease]
) -> tuple[dict[str, SubnetLease], dict[str, str]]:
    """Split leases (by key) into those that may be programmed and the rest, with why.

    Besides each lease's own checks (``subnet_lease_problem``), leases that share a
    VtepMAC are all refused until only one is left: the kernel sends a MAC to
    one place only, and guessing which claim is real could send one host's
    traffic to another. (Overlapping subnets cannot pass ``subnet_lease_problem``:
    every kept lease is an aligned subnet of the one SubnetLen, each under its
    own key.)
    """
    problems: dict[str, str] = {}
    fitting: dict[str, SubnetLease] = {}
    for key, lease in leases.items():
        problem = subnet_lease_problem(config, lease)
        if problem is None:
            fitting[key] = lease
        else:
            problems[key] = problem
    by_mac: dict[str, list[str]] = {}
    for key, lease in fitting.items():
        by_mac.setdefault(lease.vtep_mac, []).append(key)
    for mac, keys in by_mac.items():
        if len(keys) > 1:
            for key in keys:
                others = ", ".join(str(fitting[k].subnet) for k in keys if k != key)
                problems[key] = f"VtepMAC {mac} is also claimed by {others}"
    valid = {key: lease for key, lease in fitting.items() if key not in problems}
    return valid, problems


# Where flannel (and this project's network half) writes subnet.env on a host.
DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"


def parse_subnet_env(text: str) -> dict[str, str]:
    """The KEY=value lines of a flannel subnet.env (FLANNEL_SUBNET, FLANNEL_MTU ...)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


# The smallest network Docker's address pools are cut into: 16 addresses, 13 containers.
_SMALLEST_POOL_NETWORK = 28


@dataclass(frozen=True)
class AddressPool:
    """One of dockerd's ``default-address-pools``: ``base`` cut into networks of
    length ``size``, from which Docker takes the subnet of every network made
    without ``--subnet`` (Compose's project networks, swarm's docker_gwbridge)."""

    base: ipaddress.IPv4Network
    size: int

    def flag(self) -> str:
        return f"--default-address-pool=base={self.base},size={self.size}"

    def daemon_json(self) -> dict[str, Any]:
        return {"base": str(self.base), "size": self.size}


def split_lease(
    subnet: ipaddress.IPv4Network,
) -> tuple[ipaddress.IPv4Network, AddressPool | None]:
    """A host's lease -> (docker0's network, the address pool for every other
    Docker network on the host).

    The overlay routes a host's whole lease to it and nothing else, so a network
    that other hosts must reach has to lie inside the lease. flannel's
    mk-docker-opts.sh gives docker0 the whole lease, and every other network then
    comes from Docker's default pools (172.17.0.0/16 ...), which no other host
    routes. The lab gives docker0 the lease's first half and the second half to
    Docker as its only address pool, cut in eighths (none smaller than /28):
    10.5.7.0/24 -> docker0 10.5.7.0/25, pool 10.5.7.128/25 in /28s. A lease too small to halve
    and cut (longer than /26) stays whole on docker0, without a pool.
    """
    if subnet.prefixlen > 32 - 6:
        return subnet, None
    bridge, rest = subnet.subnets(prefixlen_diff=1)
    size = min(rest.prefixlen + 3, _SMALLEST_POOL_NETWORK)
    return bridge, AddressPool(rest, size)


@dataclass(frozen=True)
class DockerOptions:
    """What a host's dockerd takes from its subnet.env, as flannel's mk-docker-opts.sh
    derives it: ``bip``, the bridge's address (the subnet's first address; also
    where the lab's DNS server listens), the overlay's ``mtu``, and ``ip_masq``,
    whether Docker should masquerade (not when flannel does). Unlike
    mk-docker-opts.sh, the bridge takes only the lease's first half and
    ``address_pool`` the rest (``split_lease``)."""

    bip: ipaddress.IPv4Interface
    mtu: int
    ip_masq: bool
    address_pool: AddressPool | None = None

    def daemon_json(self) -> dict[str, Any]:
        """daemon.json keys: bip, mtu, default-address-pools and, when flannel
        masquerades, ip-masq false."""
        options: dict[str, Any] = {"bip": str(self.bip), "mtu": self.mtu}
        if self.address_pool is not None:
            options["default-address-pools"] = [self.address_pool.daemon_json()]
        if not self.ip_masq:
            options["ip-masq"] = False
        return options

    def flags(self) -> list[str]:
        """The same as dockerd flags (``--ip-masq`` aside: see mk-docker-opts)."""
        flags = [f"--bip={self.bip}", f"--mtu={self.mtu}"]
        if self.address_pool is not None:
            flags.append(self.address_pool.flag())
        return flags


def docker_options_for_lease(
    subnet: ipaddress.IPv4Network, mtu: int, ip_masq: bool = False
) -> DockerOptions:
    bridge, pool = split_lease(subnet)
    bip = ipaddress.IPv4Interface(f"{bridge.network_address + 1}/{bridge.prefixlen}")
    return DockerOptions(bip, mtu, ip_masq, pool)


def docker_options(subnet_env: Mapping[str, str]) -> DockerOptions:
    """subnet.env's values (``parse_subnet_env``) -> Docker's options. SchemaError
    when FLANNEL_SUBNET or FLANNEL_MTU is missing or not valid."""
    try:
        lease = ipaddress.IPv4Interface(subnet_env["FLANNEL_SUBNET"]).network
        mtu = int(subnet_env["FLANNEL_MTU"])
    except (KeyError, ValueError) as error:
        raise SchemaError(
            f"subnet.env lacks a valid FLANNEL_SUBNET/FLANNEL_MTU: {error}"
        ) from error
    return docker_options_for_lease(lease, mtu, ip_masq=subnet_env.get("FLANNEL_IPMASQ") != "true")
