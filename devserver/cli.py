"""Command-line pieces shared by `python -m devserver` and `python -m devserver.kaizala`."""

import argparse
import errno
import signal
import sys
import threading

from .kaizala import Faults
from .network import is_loopback, is_wildcard


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 meaning any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 to 65535 (0 picks any free port)")
    return port


def cannot_bind(server: str, host: str, port: int, exc: OSError, how: str) -> int:
    """Explain, without a traceback, why `server` could not listen on host:port; `how` names the flag to change.
    Returns the exit status (2)."""
    if exc.errno == errno.EADDRINUSE:
        problem = f"port {port} is in use (by another program, or a devserver still running)"
    elif exc.errno == errno.EACCES:
        problem = f"port {port} needs privileges this user lacks"
    else:
        problem = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    print(
        f"devserver: cannot start the {server}: {problem}.\n  Pick another port: {how} (0 picks any free port).",
        file=sys.stderr,
        flush=True,
    )
    return 2


def warn_if_exposed(host: str, local_stand_in: str) -> None:
    """A non-loopback --host: say what the network now reaches, and that the dev endpoints stay loopback-only."""
    if is_loopback(host):
        return
    where = "every interface" if is_wildcard(host) else host
    shown = host or "''"
    print(
        f"devserver: WARNING: --host {shown} listens on {where}: other machines can reach the function host, "
        "the stand-in's /v1/users/me and the card's files.\n"
        "  The stand-in's dev endpoints (/v1/dev/*: token minting, faults, stats) stay loopback-only: they answer "
        f"only requests from this machine to localhost, 127.0.0.1 or [::1] (e.g. {local_stand_in}/v1/dev/tokens), "
        "so the card preview works only from this machine.",
        file=sys.stderr,
        flush=True,
    )


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kaizala stand-in faults (also changeable at PUT /v1/dev/faults)")
    group.add_argument("--latency-ms", type=float, default=0.0, help="delay every users/me answer")
    group.add_argument("--jitter-ms", type=float, default=0.0, help="vary that delay by up to this much")
    for rate in Faults.RATES:
        flag = "--" + rate.replace("_", "-")
        group.add_argument(flag, type=float, default=0.0, help="fraction of calls answered with this fault")
    group.add_argument("--error-status", type=int, default=503, help="status for --error-rate: 500, 503 or 429")
    group.add_argument("--hang-seconds", type=float, default=30.0, help="how long --hang-rate hangs")


def faults_from(args: argparse.Namespace) -> Faults:
    try:
        return Faults(**{name: getattr(args, name) for name in Faults.__dataclass_fields__}).validated()
    except ValueError as exc:
        raise SystemExit(f"devserver: {exc}") from None


def wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
