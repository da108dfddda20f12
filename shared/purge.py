"""`python -m shared.purge --user <id> | --all | --check`: make every instance forget a user's cached identities
(or all), or check that the fleet cache works with these settings.

Reads the TOKEN_CACHE_REDIS_ settings (and AZURE_CLIENT_ID) from the environment, like the function app: the secret
is needed to find the user's entries (the purge index holds keyed tags, not user ids). Deletes the shared entries
and publishes the purge; every subscribed instance drops its in-process copies within a second. `--check` connects,
writes, reads and deletes one sealed probe, publishes and hears one message, and prints each step on a line. Exit
status: 0 done (or every check passed), 1 Redis did not answer (or a check failed), 2 usage or settings.
"""

import argparse
import os
import sys

from .fleet import FleetCache
from .fleet.cache import credential_provider
from .settings import SettingsError, fleet_settings

CLI_TIMEOUT_MS = 5000  # an operator's machine may be far from the cache: not the request path's budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.purge", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--user", metavar="ID", help="the Kaizala user id, or Teams user's object id, whose cached identities to forget"
    )
    which.add_argument("--all", action="store_true", help="forget every cached identity")
    which.add_argument("--check", action="store_true", help="check that the fleet cache works with these settings")
    args = parser.parse_args(argv)
    if args.user is not None and not args.user.strip():
        parser.error("--user needs a user id")
    names = (
        "TOKEN_CACHE_REDIS_URL",
        "TOKEN_CACHE_REDIS_SECRET",
        "TOKEN_CACHE_REDIS_CA_FILE",
        "TOKEN_CACHE_REDIS_AUTH",
        "AZURE_CLIENT_ID",
    )
    try:
        settings = fleet_settings({name: os.environ.get(name) for name in names})
    except SettingsError as error:
        print(f"purge: {error.detail}", file=sys.stderr)
        return 2
    if settings.redis_url is None or settings.redis_secret is None:
        print("purge: TOKEN_CACHE_REDIS_URL is not set: there is no shared cache to purge", file=sys.stderr)
        return 2
    fleet = FleetCache(
        settings.redis_url,
        settings.redis_secret,
        timeout_ms=CLI_TIMEOUT_MS,
        failures_to_open=1,
        ca_file=settings.redis_ca_file,
        credential_provider=credential_provider(settings),
    )
    try:
        if args.check:
            return _report(fleet)
        deleted: int | None = fleet.purge_all() if args.all else fleet.purge_user(args.user.strip())
    finally:
        fleet.close()
    if deleted is None:
        cause = fleet.health_cause
        why = f" ({cause})" if cause else ""
        print(f"purge: Redis at {fleet.where} did not answer{why}; nothing was purged", file=sys.stderr)
        return 1
    whose = "" if args.all else " of that user"
    print(f"purged {deleted} shared identities{whose}; every connected instance was told")
    return 0


def _report(fleet: FleetCache) -> int:
    print(f"Redis at {fleet.where}")
    steps = fleet.check()
    for step in steps:
        print(f"{step.name}: {'ok' if step.ok else 'FAILED'}: {step.detail}")
    works = len(steps) == 3 and all(step.ok for step in steps)
    print("verdict: the fleet cache works with these settings" if works else "verdict: the fleet cache would not work")
    return 0 if works else 1


if __name__ == "__main__":
    sys.exit(main())
