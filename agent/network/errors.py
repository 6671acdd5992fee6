"""Errors of the network half. All are DiscoveryErrors, so the CLI prints them
as one line and exits 1."""

from __future__ import annotations

from discovery.errors import DiscoveryError


class NetworkError(DiscoveryError):
    """Base of the network half's errors."""


class NetworkConfigMissing(NetworkError):
    """Nothing at <prefix>/config yet."""


class SubnetExhausted(NetworkError):
    """Every subnet between SubnetMin and SubnetMax is leased."""


class SubnetContention(NetworkError):
    """Free subnets exist, but other hosts won every claim we tried."""


class DataplaneError(NetworkError):
    """The kernel refused a netlink request (converted from pyroute2's errors)."""


class FirewallError(NetworkError):
    """An iptables command failed."""
