"""Apply the rules of ``agent.network.iptables_rules`` with the iptables binary.

Idempotent: a chain is created only when missing, its rules are checked with
``iptables -C`` and, if any is missing or the chain holds something else, the
chain is flushed and filled again in order; the jump from the built-in chain
is inserted at the top once. ``remove`` undoes all of it (clean shutdown).
Everything runs in this process's network namespace.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from agent.network.errors import FirewallError
from agent.network.iptables_rules import ChainRules, Rule

log = logging.getLogger(__name__)
IPTABLES_TIMEOUT_S = 10.0
_BUILT_IN = frozenset({"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"})


class Firewall:
    def __init__(self, binary: str = "iptables") -> None:
        self.binary = binary

    async def _run(self, *args: str) -> tuple[int, str]:
        if shutil.which(self.binary) is None:
            raise FirewallError(f"the {self.binary} binary is not installed")
        command = [self.binary, "-w", *args]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), IPTABLES_TIMEOUT_S)
        except TimeoutError as error:
            process.kill()
            await process.wait()
            raise FirewallError(f"{' '.join(command)} timed out") from error
        if process.returncode != 0:
            return process.returncode or 1, err.decode(errors="replace").strip()
        return 0, out.decode(errors="replace")

    async def _must(self, *args: str) -> str:
        code, text = await self._run(*args)
        if code != 0:
            raise FirewallError(f"iptables {' '.join(args)} failed: {text}")
        return text

    async def _has(self, rule: Rule) -> bool:
        code, _ = await self._run("-t", rule.table, "-C", rule.chain, *rule.spec)
        return code == 0

    async def _chain_exists(self, table: str, chain: str) -> bool:
        code, _ = await self._run("-t", table, "-S", chain)
        return code == 0

    async def _rule_count(self, table: str, chain: str) -> int:
        listing = await self._must("-t", table, "-S", chain)
        return sum(1 for line in listing.splitlines() if line.startswith("-A "))

    async def ensure(self, chain: ChainRules) -> bool:
        """Make the chain hold exactly its rules, in order, and be jumped to.
        Returns True if anything had to change."""
        changed = False
        if not await self._chain_exists(chain.table, chain.chain):
            await self._must("-t", chain.table, "-N", chain.chain)
            changed = True
        present = [await self._has(rule) for rule in chain.rules]
        count = await self._rule_count(chain.table, chain.chain)
        if not all(present) or count != len(chain.rules):
            await self._must("-t", chain.table, "-F", chain.chain)
            for rule in chain.rules:
                await self._must("-t", rule.table, "-A", rule.chain, *rule.spec)
            changed = True
        if not await self._has(chain.jump):
            if chain.jump.chain not in _BUILT_IN and not await self._chain_exists(
                chain.jump.table, chain.jump.chain
            ):
                # DOCKER-USER before dockerd made it: dockerd keeps a chain it finds,
                # and puts its jump from FORWARD at the top, as it does anyway.
                await self._must("-t", chain.jump.table, "-N", chain.jump.chain)
            await self._must("-t", chain.jump.table, "-I", chain.jump.chain, "1", *chain.jump.spec)
            changed = True
        if changed:
            log.info("iptables %s/%s set up", chain.table, chain.chain)
        return changed

    async def remove(self, chain: ChainRules) -> None:
        """Remove the jump(s), then the chain. Missing pieces are fine."""
        for _ in range(10):  # bounded: a jump added several times by hand
            if not await self._has(chain.jump):
                break
            await self._must("-t", chain.jump.table, "-D", chain.jump.chain, *chain.jump.spec)
        if await self._chain_exists(chain.table, chain.chain):
            await self._must("-t", chain.table, "-F", chain.chain)
            await self._must("-t", chain.table, "-X", chain.chain)
            log.info("iptables %s/%s removed", chain.table, chain.chain)
