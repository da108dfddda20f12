"""Kaizala card (and Teams tab) authentication for Azure Functions.

A function author needs three names: `protected` (the guard), `Identity` (who called) and `json_response`.
Each rule lives in one obvious place:

- guard (the decorator, failures to answers), authenticator (the checks in order; the composition root),
  request_token (where a token comes from, its shape), claims (what a JWT says about itself, unverified),
  policy (who may call), identity, errors (every typed failure and its message), responses, products.
- settings/ (every app setting: values, kaizala, fleet, teams).
- providers/ (who checks a token: base, kaizala, teams, signing_keys).
- http/ (upstream: the hardened client under one deadline; deadline; untrusted_json).
- cache/ (entry: lifetime rules; flight: single flight; admission: the slots and the line; identity_cache).
- fleet/ with Redis on (client, breaker, sealing, records, lease, purges, composed by FleetCache), and purge
  (`python -m shared.purge`).
- telemetry/ (the kaizala_auth metrics, spans and log correlation through OpenTelemetry, off unless configured:
  names, off, live, correlation, setup; docs/telemetry.md).
- forking (what a forked child starts afresh).
"""

from .authenticator import authenticate, clear_cache
from .errors import ApiError
from .guard import protected
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
