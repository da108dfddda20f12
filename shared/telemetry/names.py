"""Every name telemetry exports, and every value an attribute may take: a closed vocabulary, so no attribute can
ever carry a token, a hash or tag of one, a user id, a name, a phone number, a UPN or an e-mail address.

docs/telemetry.md lists the same table; tests/test_telemetry_names.py holds the two to each other.
"""

from typing import Final

METER: Final = "kaizala_auth"
TRACER: Final = "kaizala_auth"
LOGGER: Final = "kaizala_auth"

REQUESTS: Final = "kaizala_auth.requests"
UPSTREAM_DURATION: Final = "kaizala_auth.upstream.duration"
UPSTREAM_ACTIVE: Final = "kaizala_auth.upstream.active"
SHED: Final = "kaizala_auth.shed"
FLEET_DURATION: Final = "kaizala_auth.fleet.duration"
FLEET_AVAILABLE: Final = "kaizala_auth.fleet.available"
FLEET_STATE_CHANGES: Final = "kaizala_auth.fleet.state_changes"
SIGNING_KEY_FETCHES: Final = "kaizala_auth.signing_keys.fetches"

# Attribute keys (the same on metrics and spans).
PROVIDER: Final = "provider"
OUTCOME: Final = "outcome"
SOURCE: Final = "source"
REASON: Final = "reason"
OPERATION: Final = "operation"
CAUSE: Final = "cause"
STATE: Final = "state"
STATUS_CODE: Final = "http.response.status_code"  # spans only: the upstream's HTTP status

NONE: Final = "none"
PROVIDERS: Final = frozenset({"kaizala", "teams", NONE})
# A request's outcome: "ok" or the error code it was answered with (shared/errors.py).
REQUEST_OUTCOMES: Final = frozenset(
    {
        "ok",
        "invalid_request",
        "missing_token",
        "invalid_token",
        "forbidden",
        "server_misconfigured",
        "internal_error",
        "identity_bad_response",
        "identity_unavailable",
    }
)
SOURCES: Final = frozenset({"hit", "fleet", "upstream", "shared", NONE})
UPSTREAM_OUTCOMES: Final = frozenset({"ok", "rejected", "throttled", "unavailable", "bad_response", "timeout"})
SHED_REASONS: Final = frozenset({"throttled", "busy", "unhealthy"})
FLEET_OUTCOMES: Final = frozenset({"ok", "timeout", "connection", "error"})
FLEET_STATES: Final = frozenset({"available", "unavailable"})
# A fleet operation is named after the FleetCache part that made the round trip (shared/fleet): a code name.
# A state change's cause is "recovered" or the kind of failure (shared.fleet.health.Cause.kind: "timeout", "refused",
# "connection", "certificate", "tls", "sign_in", "permission", "cluster_redirect", "cluster_down", "unresolved",
# "error_reply", "other").

# Span names: what was called, never with whom.
SPAN_KAIZALA: Final = "kaizala users/me"
SPAN_ENTRA_KEYS: Final = "entra signing keys"
SPAN_REDIS: Final = "redis {operation}"
