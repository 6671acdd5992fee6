"""Keep one lab process running, as systemd's ``Restart=always`` keeps the Vagrant lab's.

    python -m labs.supervisor --name agent-services@host1 \
        --pid-file /var/lib/discovery-lab/lab/host1/agent-services.pid -- COMMAND...

Starts COMMAND and starts it again whenever it ends, for whatever reason,
after a pause that doubles from ``RESTART_MIN_S`` up to ``RESTART_MAX_S``
(and is back at the minimum once a run lasted ``STEADY_S``), each restart
logged on one line with how the process ended. SIGTERM or SIGINT to the
supervisor stops the process (SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``)
and ends the supervisor; that is how `lab down` stops it. The child's PID is
kept in the pid file, so faults can be aimed at the process itself.

Signals are taken synchronously (blocked, then ``sigtimedwait``), so there
is no handler racing the main loop; the child gets them unblocked again.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from discovery.retry import Backoff

RESTART_MIN_S = 0.5
RESTART_MAX_S = 15.0
STEADY_S = 60.0
STOP_TIMEOUT_S = 10.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_WATCHED = _STOP_SIGNALS | {signal.SIGCHLD}


def _say(name: str, text: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
    print(f"{stamp} supervisor {name}: {text}", flush=True)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def restart_pause(backoff: Backoff, ran_s: float) -> float:
    """The pause before the next start: doubling, capped, reset after a steady run."""
    if ran_s >= STEADY_S:
        backoff.reset()
    return backoff.next_delay()


def _unblock_in_child() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)


def _wait_for_stop(timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for SIGTERM/SIGINT; True if one came."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        info = signal.sigtimedwait(_WATCHED, left)
        if info is not None and info.si_signo in _STOP_SIGNALS:
            return True
    return False


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def supervise(name: str, command: list[str], pid_file: Path | None) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    restarts = Backoff(RESTART_MIN_S, RESTART_MAX_S)
    while True:
        started = time.monotonic()
        try:
            child = subprocess.Popen(command, preexec_fn=_unblock_in_child)
        except OSError as error:
            _say(name, f"cannot start {command[0]}: {error}")
            child = None
        if child is not None:
            _say(name, f"started {command[0]} (pid {child.pid})")
            if pid_file is not None:
                pid_file.write_text(f"{child.pid}\n")
            stopping = False
            while child.poll() is None:
                info = signal.sigtimedwait(_WATCHED, 1.0)
                if info is not None and info.si_signo in _STOP_SIGNALS:
                    stopping = True
                    _stop(child)
            if stopping:
                _say(name, f"stopped on request ({describe_exit(child.returncode)})")
                if pid_file is not None:
                    pid_file.unlink(missing_ok=True)
                return 0
            how = describe_exit(child.returncode)
        else:
            how = "did not start"
        ran_s = time.monotonic() - started
        delay_s = restart_pause(restarts, ran_s)
        _say(name, f"{how} after {ran_s:.1f} s; starting it again in {delay_s:.1f} s")
        if _wait_for_stop(delay_s):
            _say(name, "stopped on request while waiting to start it again")
            if pid_file is not None:
                pid_file.unlink(missing_ok=True)
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labs.supervisor", description=__doc__)
    parser.add_argument("--name", required=True, help="what the process is, for the log")
    parser.add_argument("--pid-file", type=Path, help="where to keep the child's PID")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARG...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise")
    return supervise(args.name, command, args.pid_file)


if __name__ == "__main__":
    sys.exit(main())
