"""The small parsers every setting goes through, and the one error they raise.

Each takes the setting's name and its raw value (None when unset), so a problem is reported with the name the
operator has to fix.
"""

import ipaddress
import math
from urllib.parse import urlsplit

from ..errors import ServerMisconfigured


class SettingsError(ServerMisconfigured):
    """A setting is missing or malformed. The caller sees only `server_misconfigured`; the log line names the
    setting and the problem, so the operator knows what to fix."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__()
        self.setting = setting
        self.problem = problem

    @property
    def detail(self) -> str:
        return f"{self.setting} {self.problem}"


def https_url(name: str, raw: str | None, default: str) -> str:
    """An absolute https URL (`default` when empty). What it names decides which tokens count, so plain http only
    to a stand-in on this machine, and no query, fragment or credentials."""
    url = (raw or "").strip() or default
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsed only to refuse a malformed or out-of-range port
    except ValueError:
        raise SettingsError(name, "must be an absolute https URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(name, "must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise SettingsError(name, "must use https (http is allowed only for localhost)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise SettingsError(name, "must not carry a query, fragment or credentials")
    return url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split(raw: str | None) -> frozenset[str]:
    return frozenset(item.strip() for item in (raw or "").split(",") if item.strip())


def optional_list(name: str, raw: str | None) -> frozenset[str]:
    """Unset or blank means "no restriction"; set to something that holds no id (`,`) is a mistake, not "anyone"."""
    if raw is None or not raw.strip():
        return frozenset()
    items = split(raw)
    if not items:
        raise SettingsError(name, f"is set to {raw!r}, which holds no id: list ids, or leave it empty")
    return items


def number(
    name: str,
    raw: str | None,
    *,
    default: float,
    low: float,
    high: float | None = None,
    whole: bool = False,
) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise SettingsError(name, f"must be {kind}, got {raw!r}") from None
    if math.isnan(value) or value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise SettingsError(name, f"must be {bound}, got {raw!r}")
    return value


def flag(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"must be 1 or 0, got {raw!r}")
