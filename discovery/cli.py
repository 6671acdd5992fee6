"""discoveryctl: look at and change what the lab has registered in etcd.

    discoveryctl lookup web            the endpoints of one service
    discoveryctl services              every service, with endpoint counts
    discoveryctl register web --address 10.5.1.7 --port 80 [--ttl 30]
    discoveryctl deregister web --address 10.5.1.7 [--port 80]
    discoveryctl watch [web]           stream changes as they happen
    discoveryctl subnets               flannel-style subnet leases
    discoveryctl hosts                 lab hosts (node records joined with leases)

Every listing takes ``-o json``. Exit codes: 0 fine, 1 nothing found or the
request was refused, 2 bad command line or settings, 3 etcd unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any, NoReturn

from discovery import flannel, schema
from discovery.errors import DiscoveryError, EtcdUnavailable, SchemaError, SettingsError
from discovery.settings import Settings, add_settings_flags, settings_from_args
from discovery.store import EtcdStore
from discovery.store_api import Change, ConnectionLost, Resumed, Snapshot, Store

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
# etcdctl-like budget: a command gives up on unreachable etcd within this.
COMMAND_BUDGET_S = 5.0


def within_command_budget(settings: Settings) -> Settings:
    """Share a command's budget across the endpoints, so a dead cluster fails in time
    (every discoveryctl command, the plugins' too)."""
    per_request = min(settings.request_timeout_s, 4.0 / len(settings.etcd_endpoints))
    return dataclasses.replace(settings, request_timeout_s=per_request)


class CommandError(DiscoveryError):
    """A request the user can fix: unknown service, nothing to deregister."""


# Command groups that packages above the core add, by entry point (the lab adds
# `lab`): the core never imports them, and loads one only when its command runs,
# so `discoveryctl lookup` starts without any lab code.
PLUGIN_GROUP = "discoveryctl.commands"


def plugin_commands() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=PLUGIN_GROUP)}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, as every other error here."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# ---------------------------------------------------------------- rendering


def age_text(registered_at: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    try:
        then = datetime.fromisoformat(registered_at.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if value in ("", None) or value == []:
            return "-"
        if isinstance(value, list | tuple):
            return ",".join(str(item) for item in value)
        return str(value)

    cells = [[cell(row[column]) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[index]) for line in cells)) if cells else len(column)
        for index, column in enumerate(columns)
    ]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def emit(rows: list[dict[str, Any]], columns: Sequence[str], output: str) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows, columns))


def endpoint_row(endpoint: schema.Endpoint, key: str) -> dict[str, Any]:
    return {
        "service": endpoint.service,
        "address": endpoint.address,
        "port": endpoint.port,
        "protocol": endpoint.protocol,
        "port_name": endpoint.port_name,
        "host": endpoint.node,
        "container": endpoint.container_name,
        "container_id": endpoint.container_id,
        "image": endpoint.image,
        "tags": list(endpoint.tags),
        "health": endpoint.health,
        "registered_at": endpoint.registered_at,
        "age": age_text(endpoint.registered_at),
        "key": key,
    }


LOOKUP_COLUMNS = ("service", "address", "port", "host", "container", "tags", "health", "age")


# ---------------------------------------------------------------- reading


async def read_endpoints(
    store: Store, settings: Settings, service: str | None
) -> list[tuple[str, schema.Endpoint]]:
    """(key, endpoint) pairs; unparsable values are reported on stderr and left out."""
    if service is None:
        prefix = schema.services_prefix(settings.prefix, settings.domain)
    else:
        prefix = schema.service_prefix(settings.prefix, settings.domain, service)
    items, _ = await store.get_prefix(prefix)
    found = []
    for key in sorted(items):
        try:
            record_key = schema.parse_record_key(settings.prefix, settings.domain, key)
            found.append((key, schema.decode_service_record(record_key, items[key].value)))
        except SchemaError as error:
            print(f"discoveryctl: skipping {key}: {error}", file=sys.stderr)
    return found


async def read_subnet_leases(store: Store, settings: Settings) -> list[dict[str, Any]]:
    items, _ = await store.get_prefix(flannel.subnets_prefix(settings.network_prefix))
    rows = []
    for key in sorted(items):
        try:
            lease = flannel.parse_subnet_lease(settings.network_prefix, key, items[key].value)
        except SchemaError as error:
            print(f"discoveryctl: skipping {key}: {error}", file=sys.stderr)
            continue
        ttl = await store.lease_ttl(items[key].lease) if items[key].lease else -1
        rows.append(
            {
                "subnet": str(lease.subnet),
                "public_ip": str(lease.public_ip),
                "backend": lease.backend_type,
                "vni": lease.vni,
                "vtep_mac": lease.vtep_mac,
                "expires_in_s": ttl if ttl >= 0 else None,
                "key": key,
            }
        )
    return rows


# ---------------------------------------------------------------- commands


async def cmd_lookup(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    service = schema.normalise_dns_label(args.service)
    endpoints = await read_endpoints(store, settings, service)
    if not endpoints:
        raise CommandError(f"no endpoints for service {service}")
    if args.tag:
        # as Consul's ?tag= and DNS's TAG.NAME.service.lab: endpoints with that tag
        tag = schema.normalise_dns_label(args.tag)
        endpoints = [(key, e) for key, e in endpoints if tag in e.tags]
        if not endpoints:
            raise CommandError(f"no endpoints for service {service} tagged {tag}")
    emit([endpoint_row(e, key) for key, e in endpoints], LOOKUP_COLUMNS, args.output)
    return 0


async def cmd_services(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    by_service: dict[str, list[schema.Endpoint]] = {}
    for _, endpoint in await read_endpoints(store, settings, None):
        by_service.setdefault(endpoint.service, []).append(endpoint)
    rows = [
        {
            "service": name,
            "endpoints": len(endpoints),
            "serving": sum(e.serving for e in endpoints),
            "hosts": sorted({e.node for e in endpoints if e.node}),
            "tags": sorted({tag for e in endpoints for tag in e.tags}),
        }
        for name, endpoints in sorted(by_service.items())
    ]
    emit(rows, ("service", "endpoints", "serving", "hosts", "tags"), args.output)
    return 0


async def cmd_register(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    try:
        endpoint = schema.Endpoint(
            service=schema.normalise_dns_label(args.service),
            address=args.address,
            port=args.port,
            protocol=args.protocol,
            port_name=args.port_name or "",
            node=schema.normalise_dns_label(args.host) if args.host else "",
            tags=tuple(schema.normalise_dns_label(tag) for tag in args.tag),
            ttl=settings.record_ttl_s,
        )
    except SchemaError as error:
        raise SettingsError(f"cannot register: {error}") from error
    key = schema.endpoint_key(
        settings.prefix, settings.domain, endpoint.service, endpoint.endpoint_id
    )
    lease_id = await store.grant_lease(args.ttl) if args.ttl else None
    await store.put(key, schema.encode_endpoint(endpoint), lease_id)
    lifetime = f"for {args.ttl} s (etcd lease {lease_id:x})" if lease_id else "until deregistered"
    where = f"{endpoint.address}:{endpoint.port}" if endpoint.port else endpoint.address
    print(f"registered {endpoint.service} at {where} {lifetime}: {key}")
    return 0


async def cmd_deregister(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    service = schema.normalise_dns_label(args.service)
    matches = [
        key
        for key, endpoint in await read_endpoints(store, settings, service)
        if endpoint.address == args.address and (args.port is None or endpoint.port == args.port)
    ]
    if not matches:
        where = args.address + (f":{args.port}" if args.port is not None else "")
        raise CommandError(f"no endpoint of service {service} at {where}")
    for key in matches:
        await store.delete(key)
        print(f"deregistered {key}")
    return 0


async def cmd_subnets(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    rows = await read_subnet_leases(store, settings)
    emit(rows, ("subnet", "public_ip", "vtep_mac", "vni", "expires_in_s"), args.output)
    return 0


async def cmd_hosts(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    items, _ = await store.get_prefix(schema.nodes_prefix(settings.prefix, settings.domain))
    nodes = []
    for key in sorted(items):
        try:
            nodes.append(schema.decode_node(items[key].value))
        except SchemaError as error:
            print(f"discoveryctl: skipping {key}: {error}", file=sys.stderr)
    leases = {row["public_ip"]: row for row in await read_subnet_leases(store, settings)}
    counts: dict[str, int] = {}
    for _, endpoint in await read_endpoints(store, settings, None):
        counts[endpoint.node] = counts.get(endpoint.node, 0) + 1
    rows = []
    for node in nodes:
        lease = leases.pop(node.address, None)
        rows.append(
            {
                "host": node.node,
                "address": node.address,
                "subnet": lease["subnet"] if lease else node.subnet,
                "vtep_mac": lease["vtep_mac"] if lease else "",
                "endpoints": counts.get(node.node, 0),
            }
        )
    # A lease whose host has no node record (an agent with only the network half).
    for public_ip, lease in sorted(leases.items()):
        rows.append(
            {
                "host": "",
                "address": public_ip,
                "subnet": lease["subnet"],
                "vtep_mac": lease["vtep_mac"],
                "endpoints": 0,
            }
        )
    emit(rows, ("host", "address", "subnet", "vtep_mac", "endpoints"), args.output)
    return 0


def _watch_line(kind: str, key: str, endpoint: schema.Endpoint, output: str) -> str:
    if output == "json":
        return json.dumps({"event": kind, **endpoint_row(endpoint, key)})
    where = (
        f"{endpoint.address}:{endpoint.port}/{endpoint.protocol}"
        if endpoint.port
        else endpoint.address
    )
    stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
    container = f" container={endpoint.container_name}" if endpoint.container_name else ""
    node = f" host={endpoint.node}" if endpoint.node else ""
    return f"{stamp} {kind:<7} {endpoint.service} {where}{node}{container} health={endpoint.health}"


async def cmd_watch(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    if args.service:
        prefix = schema.service_prefix(
            settings.prefix, settings.domain, schema.normalise_dns_label(args.service)
        )
    else:
        prefix = schema.services_prefix(settings.prefix, settings.domain)
    known: dict[str, schema.Endpoint] = {}

    def decode(key: str, value: bytes) -> schema.Endpoint | None:
        try:
            record_key = schema.parse_record_key(settings.prefix, settings.domain, key)
            return schema.decode_service_record(record_key, value)
        except SchemaError as error:
            print(f"discoveryctl: skipping {key}: {error}", file=sys.stderr)
            return None

    async for item in store.follow_prefix(prefix):
        if isinstance(item, Snapshot):
            fresh = {k: e for k, kv in item.items.items() if (e := decode(k, kv.value))}
            for key in sorted(set(known) - set(fresh)):
                print(_watch_line("removed", key, known[key], args.output), flush=True)
            for key in sorted(fresh):
                if known.get(key) != fresh[key]:
                    print(_watch_line("present", key, fresh[key], args.output), flush=True)
            known = fresh
            if args.output != "json":
                print(f"-- watching {prefix} from revision {item.revision}", flush=True)
        elif isinstance(item, Change):
            if item.value is None:
                gone = known.pop(item.key, None)
                if gone is not None:
                    print(_watch_line("removed", item.key, gone, args.output), flush=True)
            elif (endpoint := decode(item.key, item.value)) is not None:
                kind = "changed" if item.key in known else "added"
                known[item.key] = endpoint
                print(_watch_line(kind, item.key, endpoint, args.output), flush=True)
        elif isinstance(item, ConnectionLost):
            print(f"discoveryctl: etcd unreachable ({item.reason}); retrying", file=sys.stderr)
        elif isinstance(item, Resumed):
            print(f"discoveryctl: etcd back; resuming at revision {item.revision}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- wiring


def build_parser(plugins: dict[str, EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The core's commands, and the plugins' names for --help (scanned here if not given)."""
    parser = Parser(prog="discoveryctl", description=__doc__.split("\n")[0])
    add_settings_flags(parser)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, handler: Any, help_text: str, listing: bool = False) -> Any:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if listing:
            sub.add_argument("-o", "--output", choices=("table", "json"), default="table")
        add_settings_flags(sub, subcommand=True)
        return sub

    lookup = command("lookup", cmd_lookup, "show the endpoints of a service", listing=True)
    lookup.add_argument("service")
    lookup.add_argument(
        "--tag", help="only the endpoints with this tag (a Compose project's name, ...)"
    )
    command("services", cmd_services, "list services and their endpoint counts", listing=True)
    register = command("register", cmd_register, "register an endpoint by hand")
    register.add_argument("service")
    register.add_argument("--address", required=True, help="IP address of the endpoint")
    register.add_argument("--port", type=int, default=0, help="port (default: none, A only)")
    register.add_argument("--protocol", choices=schema.PROTOCOLS, default="tcp")
    register.add_argument("--port-name", help="name for _NAME._tcp SRV lookups, e.g. http")
    register.add_argument("--host", help="the lab host it runs on")
    register.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    register.add_argument(
        "--ttl", type=int, help="seconds until it expires (an etcd lease); default: permanent"
    )
    deregister = command("deregister", cmd_deregister, "remove endpoints registered by hand")
    deregister.add_argument("service")
    deregister.add_argument("--address", required=True)
    deregister.add_argument("--port", type=int)
    watch = command("watch", cmd_watch, "stream registrations as they change")
    watch.add_argument("service", nargs="?")
    watch.add_argument("-o", "--output", choices=("table", "json"), default="table")
    command("subnets", cmd_subnets, "list flannel-style subnet leases", listing=True)
    command("hosts", cmd_hosts, "list lab hosts", listing=True)
    plugins = plugin_commands() if plugins is None else plugins
    for name, entry in sorted(plugins.items()):
        # Listed for --help; main() hands `discoveryctl NAME ...` to the plugin unparsed.
        package = entry.value.split(".", 1)[0]
        commands.add_parser(name, help=f"the {name} commands, from {package} (see {name} --help)")
    return parser


async def run_command(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    """Run the parsed command against ``store``, within the command budget (but watch)."""
    if args.command == "watch":
        return int(await args.handler(store, settings, args))
    try:
        return int(await asyncio.wait_for(args.handler(store, settings, args), COMMAND_BUDGET_S))
    except TimeoutError as error:
        raise EtcdUnavailable(
            f"etcd did not answer within {COMMAND_BUDGET_S:.0f} s; tried "
            + ", ".join(settings.etcd_endpoints)
        ) from error


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with EtcdStore(settings) as store:
        return await run_command(store, settings, args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plugins = plugin_commands()
    if argv and argv[0] in plugins:
        entry = plugins[argv[0]]
        try:
            command = entry.load()
        except Exception as error:  # a broken or half-installed package: say which
            print(
                f"discoveryctl: the {entry.name!r} commands could not be loaded from "
                f"{entry.value}: {error} (reinstall: scripts/bootstrap)",
                file=sys.stderr,
            )
            return EXIT_NOT_FOUND
        return int(command(argv[1:]))
    args = build_parser(plugins).parse_args(argv)
    if getattr(args, "ttl", None) is not None and args.ttl <= 0:
        print("discoveryctl: --ttl must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = within_command_budget(settings_from_args(args))
        return asyncio.run(_run(args, settings))
    except (SettingsError, SchemaError) as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except EtcdUnavailable as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except DiscoveryError as error:
        print(f"discoveryctl: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
