"""The forwarding and masquerade rules flannel sets, as data. Pure: no I/O.

flannel puts its rules in chains of its own and jumps to them from the
built-in chains, so they can be found, checked and removed as a unit::

    filter FORWARD         -> FLANNEL-FWD
        FLANNEL-FWD:  -s NETWORK -j ACCEPT        overlay traffic is forwarded,
                      -d NETWORK -j ACCEPT        whatever the FORWARD policy
    nat POSTROUTING        -> FLANNEL-POSTRTG     (only with --ip-masq)
        FLANNEL-POSTRTG:
          -s NETWORK -d NETWORK              RETURN      within the overlay: no NAT
          ! -s NETWORK -d SUBNET             RETURN      arriving for our containers
          -s NETWORK ! -d 224.0.0.0/4        MASQUERADE  leaving the overlay
          ! -s NETWORK -d NETWORK            MASQUERADE  host -> overlay

and one chain of this project's own, for Docker's networks inside the lease::

    filter DOCKER-USER     -> DISCOVERY-LEASE
        DISCOVERY-LEASE: -s SUBNET -d SUBNET -j ACCEPT   between this host's
                                                         networks in the lease

Docker drops traffic between two of its bridges on one host
(DOCKER-ISOLATION-STAGE-1/2, above any rule in FORWARD but below DOCKER-USER,
the chain Docker keeps for its users). The lab hands the second half of each
lease to Docker's address pool (``flannel.split_lease``), so a Compose network
and docker0 on host1 are both in host1's lease: every other host reaches both
over the overlay, and without this rule only host1's own containers on the
other bridge could not. Networks with a ``--subnet`` outside the lease stay
isolated as Docker makes them.

flannel also skips packets kube-proxy marked; there is no kube-proxy here, so
that rule is left out. The jumps are inserted at the top of the built-in
chains (flannel does so for POSTROUTING) so that Docker's own FORWARD rules,
with their DROP policy, never see overlay traffic first.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

FORWARD_CHAIN = "FLANNEL-FWD"
LEASE_CHAIN = "DISCOVERY-LEASE"
LEASE_COMMENT = "discovery lease networks"
# Docker's chain for its users' rules, jumped to before its own isolation rules.
DOCKER_USER_CHAIN = "DOCKER-USER"
MASQUERADE_CHAIN = "FLANNEL-POSTRTG"
FORWARD_COMMENT = "flanneld forward"
MASQUERADE_COMMENT = "flanneld masq"
MULTICAST_NETWORK = "224.0.0.0/4"


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    spec: tuple[str, ...]


@dataclass(frozen=True)
class ChainRules:
    """One chain of our own, its rules in order, and the jump that leads to it."""

    table: str
    chain: str
    jump: Rule
    rules: tuple[Rule, ...]


def _comment(text: str) -> tuple[str, ...]:
    return ("-m", "comment", "--comment", text)


def forward_chain(network: ipaddress.IPv4Network) -> ChainRules:
    n = str(network)
    c = _comment(FORWARD_COMMENT)
    return ChainRules(
        "filter",
        FORWARD_CHAIN,
        Rule("filter", "FORWARD", (*c, "-j", FORWARD_CHAIN)),
        (
            Rule("filter", FORWARD_CHAIN, ("-s", n, *c, "-j", "ACCEPT")),
            Rule("filter", FORWARD_CHAIN, ("-d", n, *c, "-j", "ACCEPT")),
        ),
    )


def lease_chain(subnet: ipaddress.IPv4Network) -> ChainRules:
    sn = str(subnet)
    c = _comment(LEASE_COMMENT)
    return ChainRules(
        "filter",
        LEASE_CHAIN,
        Rule("filter", DOCKER_USER_CHAIN, (*c, "-j", LEASE_CHAIN)),
        (Rule("filter", LEASE_CHAIN, ("-s", sn, "-d", sn, *c, "-j", "ACCEPT")),),
    )


def masquerade_chain(network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network) -> ChainRules:
    n, sn = str(network), str(subnet)
    c = _comment(MASQUERADE_COMMENT)
    masquerade = ("-j", "MASQUERADE", "--random-fully")
    return ChainRules(
        "nat",
        MASQUERADE_CHAIN,
        Rule("nat", "POSTROUTING", (*c, "-j", MASQUERADE_CHAIN)),
        (
            Rule("nat", MASQUERADE_CHAIN, ("-s", n, "-d", n, *c, "-j", "RETURN")),
            Rule("nat", MASQUERADE_CHAIN, ("!", "-s", n, "-d", sn, *c, "-j", "RETURN")),
            Rule("nat", MASQUERADE_CHAIN, ("-s", n, "!", "-d", MULTICAST_NETWORK, *c, *masquerade)),
            Rule("nat", MASQUERADE_CHAIN, ("!", "-s", n, "-d", n, *c, *masquerade)),
        ),
    )


def chains_for(
    network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, ip_masq: bool
) -> tuple[list[ChainRules], list[ChainRules]]:
    """(chains this host should have, chains it should not): forwarding and the
    lease's networks always, masquerade only with --ip-masq."""
    forward, masquerade = forward_chain(network), masquerade_chain(network, subnet)
    lease = lease_chain(subnet)
    return ([forward, lease, masquerade], []) if ip_masq else ([forward, lease], [masquerade])
