"""Run the real DNS clients (dig, kdig) against a server on loopback and read their output."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
from dataclasses import dataclass, field

from tests.prerequisites import require_binary

CLIENT_TIMEOUT_S = 15.0


@dataclass
class DigReply:
    text: str
    status: str = ""
    flags: set[str] = field(default_factory=set)
    sections: dict[str, list[list[str]]] = field(default_factory=dict)

    def records(self, section: str = "ANSWER") -> list[list[str]]:
        """Records as [owner, ttl, class, type, rdata...] word lists."""
        return self.sections.get(section, [])

    def rdata(self, section: str = "ANSWER", rtype: str | None = None) -> list[str]:
        return sorted(
            " ".join(r[4:]) for r in self.records(section) if rtype is None or r[3] == rtype
        )

    @property
    def question(self) -> str:
        return self.sections["QUESTION"][0][0]


def parse_client_output(text: str) -> DigReply:
    """dig's and kdig's presentation output (they differ in separators only)."""
    reply = DigReply(text)
    status = re.search(r"status: ([A-Z]+)", text)
    reply.status = status.group(1) if status else ""
    flags = re.search(r";; [Ff]lags: ([a-z ]*);", text)
    reply.flags = set(flags.group(1).split()) if flags else set()
    current: str | None = None
    for line in text.splitlines():
        heading = re.match(r";; ([A-Z]+) SECTION:", line)
        if heading:
            current = heading.group(1)
            reply.sections.setdefault(current, [])
        elif not line.strip() or (line.startswith(";;") and current != "QUESTION"):
            current = None
        elif current is not None:
            words = line.lstrip(";").split()
            if (
                current != "QUESTION" and len(words) >= 4 and words[1].isdigit()
            ) or current == "QUESTION":
                reply.sections[current].append(words)
    return reply


async def run_client(program: str, port: int, *args: str) -> DigReply:
    require_binary(program)
    command = [program, "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args]
    if program == "kdig":
        command = [program, "@127.0.0.1", "-p", str(port), "+time=2", "+retry=0", *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return parse_client_output(output.decode(errors="replace"))


async def dig(port: int, *args: str) -> DigReply:
    return await run_client("dig", port, *args)


async def kdig(port: int, *args: str) -> DigReply:
    return await run_client("kdig", port, *args)


def exchange(port: int, data: bytes, *, tcp: bool = False, timeout_s: float = 0.3) -> bytes | None:
    """One raw query to 127.0.0.1:port, one reply (None: silence within timeout_s)."""
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as client:
            client.sendall(len(data).to_bytes(2, "big") + data)
            try:
                length = int.from_bytes(_receive_exactly(client, 2), "big")
                return _receive_exactly(client, length)
            except (TimeoutError, ConnectionError):
                return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(timeout_s)
        client.sendto(data, ("127.0.0.1", port))
        try:
            return client.recv(65535)
        except TimeoutError:
            return None


def _receive_exactly(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data
