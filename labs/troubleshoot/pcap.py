"""One captured packet, taken apart: the underlay's headers, VXLAN's, and the container's.

Pure: bytes in (what ``tcpdump -w -`` writes: a pcap file), headers out.
A VXLAN packet on the underlay is four layers deep, outermost first:

    Ethernet (underlay MACs) / IPv4 (underlay addresses) / UDP (to the VXLAN
    port, 8472 in the lab as in flannel) / VXLAN (8 bytes, carrying the VNI)
    / the container's own Ethernet frame (VTEP MACs) / IPv4 / ICMP, TCP ...
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100
IP_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}
VXLAN_HEADER_LEN = 8
VXLAN_FLAG_VNI_VALID = 0x08  # the I flag: the VNI field is set


class PacketError(ValueError):
    pass


def first_packet(pcap: bytes) -> bytes:
    """The frame of the first record of a pcap file (Ethernet link type)."""
    if len(pcap) < PCAP_HEADER_LEN + RECORD_HEADER_LEN:
        raise PacketError("no packet was captured")
    for order in ("<", ">"):
        (magic,) = struct.unpack(order + "I", pcap[:4])
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            break
    else:
        raise PacketError("not a pcap file")
    (link_type,) = struct.unpack(order + "I", pcap[20:24])
    if link_type != 1:
        raise PacketError(f"link type {link_type} is not Ethernet")
    _, _, captured, _ = struct.unpack(order + "IIII", pcap[24:40])
    frame = pcap[40 : 40 + captured]
    if len(frame) < captured:
        raise PacketError("the capture ends inside its first packet")
    return frame


def _mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def ethernet(frame: bytes) -> tuple[dict[str, Any], bytes]:
    if len(frame) < 14:
        raise PacketError("frame shorter than an Ethernet header")
    ethertype = struct.unpack("!H", frame[12:14])[0]
    payload = frame[14:]
    if ethertype == ETHERTYPE_VLAN and len(payload) >= 4:
        ethertype = struct.unpack("!H", payload[2:4])[0]
        payload = payload[4:]
    header = {
        "src_mac": _mac(frame[6:12]),
        "dst_mac": _mac(frame[0:6]),
        "ethertype": f"0x{ethertype:04x}",
    }
    return header, payload


def ipv4(packet: bytes) -> tuple[dict[str, Any], bytes]:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise PacketError("not an IPv4 packet")
    header_len = (packet[0] & 0x0F) * 4
    total_len, ident, fragment = struct.unpack("!HHH", packet[2:8])
    ttl, protocol = packet[8], packet[9]
    header = {
        "src": str(ipaddress.IPv4Address(packet[12:16])),
        "dst": str(ipaddress.IPv4Address(packet[16:20])),
        "protocol": IP_PROTOCOLS.get(protocol, str(protocol)),
        "ttl": ttl,
        "length": total_len,
        "dont_fragment": bool(fragment & 0x4000),
        "id": ident,
    }
    return header, packet[header_len:total_len]


def transport(protocol: str, segment: bytes) -> dict[str, Any]:
    if protocol in ("udp", "tcp") and len(segment) >= 4:
        src, dst = struct.unpack("!HH", segment[:4])
        return {"src_port": src, "dst_port": dst}
    if protocol == "icmp" and len(segment) >= 2:
        names = {0: "echo reply", 8: "echo request", 3: "destination unreachable"}
        return {"icmp_type": segment[0], "icmp": names.get(segment[0], str(segment[0]))}
    return {}


def decode(frame: bytes) -> dict[str, Any]:
    """The frame's headers; with ``vxlan`` and ``inner`` when it carries VXLAN."""
    outer_eth, rest = ethernet(frame)
    outer_ip, rest = ipv4(rest)
    layers: dict[str, Any] = {"ethernet": outer_eth, "ip": outer_ip}
    layers["transport"] = transport(outer_ip["protocol"], rest)
    if outer_ip["protocol"] != "udp" or len(rest) < 8 + VXLAN_HEADER_LEN:
        return layers
    vxlan = rest[8 : 8 + VXLAN_HEADER_LEN]
    if not vxlan[0] & VXLAN_FLAG_VNI_VALID:
        return layers
    layers["vxlan"] = {"flags": f"0x{vxlan[0]:02x}", "vni": int.from_bytes(vxlan[4:7], "big")}
    inner_eth, inner_rest = ethernet(rest[8 + VXLAN_HEADER_LEN :])
    inner: dict[str, Any] = {"ethernet": inner_eth}
    if int(inner_eth["ethertype"], 16) == ETHERTYPE_IPV4:
        inner_ip, inner_payload = ipv4(inner_rest)
        inner["ip"] = inner_ip
        inner["transport"] = transport(inner_ip["protocol"], inner_payload)
    layers["inner"] = inner
    return layers
