"""One function-host process of `python -m devserver --instances N` (started by devserver.fleet, not by hand).

It serves the function app exactly as `python -m devserver` does, with the settings its parent put in its
environment (the stand-in's URL, and Redis's when the fleet shares one), and prints `instance ready: api=<url>`.
It stops on SIGINT or SIGTERM, and when its parent goes away (its stdin, a pipe from the parent, closes), so an
instance never outlives the devserver that started it.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .cli import cannot_bind, port_number
from .functions_host import INVOKE_MODES, FunctionAppError, load_app
from .network import local_base
from .wsgi import serve

READY_PREFIX = "instance ready: api="


class StopFlag:
    """Set by SIGINT/SIGTERM or another thread, polled by the main thread. No lock: a signal handler that takes
    one (threading.Event.set) can deadlock with the thread it interrupted."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (less once set); True when set."""
        end = time.monotonic() + seconds
        while not self._set and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        return self._set

    def on_signals(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.set())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devserver.instance", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=0)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--cors-origin", action="append", default=[], help="an allowed origin (repeatable)")
    parser.add_argument("--cors-credentials", action="store_true")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--invoke", choices=INVOKE_MODES, default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    stop = StopFlag()
    stop.on_signals()
    threading.Thread(target=_stop_when_parent_goes, args=(stop,), name="parent-watch", daemon=True).start()

    try:
        app = load_app(args.root, set(args.cors_origin), args.cors_credentials, args.invoke)
    except FunctionAppError as exc:
        print(f"devserver: cannot start: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        server = serve(app, args.host, args.port, access_log=not args.no_access_log)
    except OSError as exc:
        return cannot_bind("function host", args.host, args.port, exc, "python -m devserver --port <first port>")
    print(f"{READY_PREFIX}{local_base(args.host, server.port)}", flush=True)
    while not stop.wait(0.2):
        pass
    server.shutdown()
    app.close()
    return 0


def _stop_when_parent_goes(stop: StopFlag) -> None:
    try:
        while os.read(0, 4096):  # the raw descriptor: a buffered read would hold a lock at interpreter exit
            pass
    except OSError:
        pass
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
