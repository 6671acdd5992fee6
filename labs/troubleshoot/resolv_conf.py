"""A container's /etc/resolv.conf, and the names its resolver tries for a short name.

Pure. The rules are the stub resolver's (glibc's, which the lab's busybox is
built on; musl's are the same for these): a name with at least ``ndots`` dots
is tried as it is first, then with each search domain; a name with fewer is
tried with each search domain first, then as it is. A name ending in a dot is
tried only as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_NDOTS = 1  # resolv.conf(5)


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int = DEFAULT_NDOTS
    options: tuple[str, ...] = field(default=())


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
    ndots = DEFAULT_NDOTS
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        keyword, *values = line.split()
        if keyword == "nameserver" and values:
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            search = tuple(values)  # the last search or domain line wins
        elif keyword == "options":
            for option in values:
                options.append(option)
                name, _, number = option.partition(":")
                if name == "ndots" and number.isdigit():
                    ndots = min(int(number), 15)  # glibc caps it at 15
    return ResolvConf(tuple(nameservers), search, ndots, tuple(options))


def candidate_names(name: str, resolv: ResolvConf) -> list[str]:
    """Fully qualified names (with the final dot) in the order the resolver asks them."""
    if name.endswith("."):
        return [name]
    as_is = name + "."
    searched = [f"{name}.{domain.rstrip('.')}." for domain in resolv.search]
    if name.count(".") >= resolv.ndots:
        return [as_is, *[n for n in searched if n != as_is]]
    return [*searched, *([as_is] if as_is not in searched else [])]


def why_this_order(name: str, resolv: ResolvConf) -> str:
    """One sentence a learner can check against resolv.conf(5)."""
    if name.endswith("."):
        return f"{name!r} ends in a dot: it is already fully qualified, no search domain is added"
    dots = name.count(".")
    if not resolv.search:
        return f"no search domains: {name!r} is asked as it is"
    plural = "dot" if dots == 1 else "dots"
    if dots >= resolv.ndots:
        return (
            f"{name!r} has {dots} {plural} (at least ndots {resolv.ndots}): asked as it is "
            f"first, then with each search domain"
        )
    return (
        f"{name!r} has {dots} {plural} (fewer than ndots {resolv.ndots}): each search domain "
        f"is tried first, then the name as it is"
    )
