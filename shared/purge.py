"""`python -m shared.purge --user <id> | --all`: make every instance forget a user's cached identities (or all).

Reads TOKEN_CACHE_REDIS_URL and TOKEN_CACHE_REDIS_SECRET from the environment, like the function app: the secret
is needed to find the user's entries (the purge index holds keyed tags, not user ids). Deletes the shared entries
and publishes the purge; every subscribed instance drops its in-process copies within a second. Exit status: 0 done,
1 Redis did not answer, 2 usage or settings.
"""

import argparse
import os
import sys

from .fleet import FleetCache
from .settings import SettingsError, fleet_settings

CLI_TIMEOUT_MS = 5000  # an operator's machine may be far from the cache: not the request path's budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.purge", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--user", metavar="ID", help="the Kaizala user id, or Teams user's object id, whose cached identities to forget"
    )
    which.add_argument("--all", action="store_true", help="forget every cached identity")
    args = parser.parse_args(argv)
    if args.user is not None and not args.user.strip():
        parser.error("--user needs a user id")
    names = ("TOKEN_CACHE_REDIS_URL", "TOKEN_CACHE_REDIS_SECRET")
    try:
        settings = fleet_settings({name: os.environ.get(name) for name in names})
    except SettingsError as error:
        print(f"purge: {error.detail}", file=sys.stderr)
        return 2
    if settings.redis_url is None or settings.redis_secret is None:
        print("purge: TOKEN_CACHE_REDIS_URL is not set: there is no shared cache to purge", file=sys.stderr)
        return 2
    fleet = FleetCache(settings.redis_url, settings.redis_secret, timeout_ms=CLI_TIMEOUT_MS, failures_to_open=1)
    try:
        deleted = fleet.purge_all() if args.all else fleet.purge_user(args.user.strip())
    finally:
        fleet.close()
    if deleted is None:
        print(f"purge: Redis at {fleet.where} did not answer; nothing was purged", file=sys.stderr)
        return 1
    whose = "" if args.all else " of that user"
    print(f"purged {deleted} shared identities{whose}; every connected instance was told")
    return 0


if __name__ == "__main__":
    sys.exit(main())
