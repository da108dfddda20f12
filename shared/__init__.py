"""Kaizala card authentication for Azure Functions.

A function author needs three names: `protected` (the guard), `Identity` (who called) and `json_response`.
Each rule lives in one module: settings (a package: values, kaizala, fleet, teams), tokens (transport and local
checks), http (upstream: the hardened HTTP client, under one deadline from http.deadline; http.untrusted_json),
kaizala (users/me), cache (both tiers, single flight, the cap on upstream calls), policy (who may call), errors
(the typed failures), responses (JSON and error mapping), products; with Redis on, the fleet package (client,
breaker, sealing, records, lease, purges, composed by FleetCache) and purge; with Teams on, teams and
signing_keys.
"""

from .auth import authenticate, clear_cache, protected
from .errors import ApiError
from .identity import Identity
from .responses import NO_STORE, json_response, not_modified, raw_json_response

__all__ = [
    "NO_STORE",
    "ApiError",
    "Identity",
    "authenticate",
    "clear_cache",
    "json_response",
    "not_modified",
    "protected",
    "raw_json_response",
]
