"""flannel's etcd layout: the overlay network config and the per-host subnet leases.

The keys and JSON are flannel's own, so anyone who knows flannel recognises
them and flannel's tools read them::

    /coreos.com/network/config
        {"Network": "10.5.0.0/16", "SubnetLen": 24,
         "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    /coreos.com/network/subnets/10.5.1.0-24        (under the host's etcd lease)
        {"PublicIP": "192.168.100.11", "BackendType": "vxlan",
         "BackendData": {"VNI": 1, "VtepMAC": "7a:1b:..."}}

Defaults follow flannel: SubnetLen 24 (half the network when the network is a
/24 or smaller), SubnetMin the second subnet, SubnetMax the last one. Pure:
parsing, encoding and the arithmetic those defaults need.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from discovery.errors import SchemaError

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

    def subnet_at(self, address: ipaddress.IPv4Address) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{address}/{self.subnet_len}")


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


def parse_network_config(raw: bytes | str) -> NetworkConfig:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SchemaError(f"network config is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise SchemaError("network config must be a JSON object")
    network = _network_field(data, "Network")
    default_len = 24 if network.prefixlen < 24 else network.prefixlen + 1
    subnet_len = _field(data, "SubnetLen", int, default_len)
    if not network.prefixlen < subnet_len <= 30:
        raise SchemaError(
            f"network config: SubnetLen {subnet_len} must be longer than the Network's "
            f"/{network.prefixlen} and at most 30"
        )
    subnet_size = 2 ** (32 - subnet_len)
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


def encode_lease_value(lease: SubnetLease) -> bytes:
    data = {
        "PublicIP": str(lease.public_ip),
        "BackendType": lease.backend_type,
        "BackendData": {"VNI": lease.vni, "VtepMAC": lease.vtep_mac},
    }
    return json.dumps(data, separators=(",", ":")).encode()


def parse_lease(network_prefix: str, key: str, raw: bytes | str) -> SubnetLease:
    subnet = parse_subnet_key(network_prefix, key)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SchemaError(f"lease {subnet}: value is not JSON: {error}") from error
    if not isinstance(data, dict):
        raise SchemaError(f"lease {subnet}: value must be a JSON object")
    try:
        public_ip = ipaddress.IPv4Address(data.get("PublicIP"))
    except ValueError as error:
        raise SchemaError(
            f"lease {subnet}: PublicIP {data.get('PublicIP')!r} is invalid"
        ) from error
    backend_data = data.get("BackendData")
    if not isinstance(backend_data, dict):
        raise SchemaError(f"lease {subnet}: BackendData must be a JSON object")
    mac = backend_data.get("VtepMAC")
    if not isinstance(mac, str) or not _MAC_RE.match(mac.lower()):
        raise SchemaError(f"lease {subnet}: BackendData.VtepMAC {mac!r} is not a MAC address")
    vni = backend_data.get("VNI", DEFAULT_VNI)
    if isinstance(vni, bool) or not isinstance(vni, int):
        raise SchemaError(f"lease {subnet}: BackendData.VNI must be an integer")
    backend_type = data.get("BackendType", "vxlan")
    if not isinstance(backend_type, str):
        raise SchemaError(f"lease {subnet}: BackendType must be a string")
    return SubnetLease(subnet, public_ip, mac.lower(), vni, backend_type)


def parse_subnet_env(text: str) -> dict[str, str]:
    """The KEY=value lines of a flannel subnet.env (FLANNEL_SUBNET, FLANNEL_MTU ...)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values
