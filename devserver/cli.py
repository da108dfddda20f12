"""Command-line pieces shared by `python -m devserver` and `python -m devserver.kaizala`."""

import argparse
import signal
import threading

from .kaizala import Faults


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
