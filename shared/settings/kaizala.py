"""Kaizala's settings: which cards may call, where users/me lives, and the limits on calls to it."""

import os

from .values import SettingsError, https_url, split

DEFAULT_IDENTITY_URL = "https://kms1.kaiza.la/v1/users/me"
TOKEN_LIFETIME_SECONDS = 1800  # Kaizala's Integration Service tokens live 30 minutes.
ANY_ACTION_PACKAGE = "*"


def identity_url(raw: str | None) -> str:
    # The token travels in a header to this URL.
    return https_url("KAIZALA_IDENTITY_URL", raw, DEFAULT_IDENTITY_URL)


def card_list(raw: str | None) -> frozenset[str]:
    name = "KAIZALA_ALLOWED_ACTION_PACKAGE_IDS"
    items = split(raw)
    if not items:
        raise SettingsError(
            name, f"is not set: set it to your card's action package id (comma-separated, or {ANY_ACTION_PACKAGE})"
        )
    if ANY_ACTION_PACKAGE in items and len(items) > 1:
        raise SettingsError(name, f"mixes {ANY_ACTION_PACKAGE} with ids: set either {ANY_ACTION_PACKAGE} alone or ids")
    return items


def default_max_concurrent_calls(worker_pool: str | None) -> int:
    """Half the worker's thread pool (at least 2), so calls to a hanging Kaizala never hold every thread and
    cached users keep being answered. The pool is PYTHON_THREADPOOL_THREAD_COUNT, else the worker's own default
    for Python 3.9+ (that of ThreadPoolExecutor: min(32, CPUs + 4))."""
    pool = min(32, (os.cpu_count() or 1) + 4)
    value = (worker_pool or "").strip()
    if value.isascii() and value.isdecimal() and 0 < int(value) <= 10_000:
        pool = int(value)
    return max(2, pool // 2)
