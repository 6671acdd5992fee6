"""A headless Debian chromium driven over the DevTools protocol (aiohttp's websocket client).

``headless_chromium`` starts ``chromium --headless=new --remote-debugging-port=0``
with a fresh profile, reads the port it chose from DevToolsActivePort, and
attaches to its page. Nothing is downloaded: the browser is the system's. The
browser (its process group, started here) is killed by PID when done.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"


class CdpError(RuntimeError):
    pass


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next_id = 0

    async def call(self, method: str, timeout_s: float = 30, **params: Any) -> dict[str, Any]:
        """One command; events arriving meanwhile are ignored."""
        self._next_id += 1
        ident = self._next_id
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == ident:
                    if "error" in message:
                        raise CdpError(f"{method}: {message['error']}")
                    return dict(message.get("result", {}))

    async def evaluate(self, expression: str, timeout_s: float = 30) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = await self.call(
            "Runtime.evaluate",
            timeout_s,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str, timeout_s: float = 30) -> None:
        """Load url and return once its document has loaded."""
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(CdpError):  # the old document's context may be gone
                loaded = await self.evaluate(
                    f"location.href === {url!r} && document.readyState === 'complete'"
                )
                if loaded:
                    return
            if time.monotonic() > deadline:
                raise CdpError(f"{url} did not load in {timeout_s} s")
            await asyncio.sleep(0.02)

    async def screenshot(self, path: Path) -> Path:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path


@contextlib.asynccontextmanager
async def headless_chromium(
    profile: Path, width: int = 1366, height: int = 900
) -> AsyncIterator[Page]:
    profile.mkdir(parents=True, exist_ok=True)
    command = [
        CHROMIUM,
        "--headless=new",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--window-size={width},{height}",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),  # chromium refuses root otherwise
        "about:blank",
    ]
    log = (profile / "chromium.log").open("wb")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (profile / "chromium.log").read_text(errors="replace")[-2000:]
                raise CdpError(f"chromium did not start (exit {process.poll()}): {tail}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json(content_type=None)
            target = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width, height=height, deviceScaleFactor=1, mobile=False,
                )  # fmt: skip
                yield page
    finally:
        # Kill the browser we started, by its PID (and its process group: its helpers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log.close()
