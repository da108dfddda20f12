"""Found by the fleet soak (not fixed here: shared/ is another engineer's): an upstream that accepts the connection
but sends no answer before the deadline is reported as a failed request, not as a slow one.

urllib3's Retry(read=0) turns the read timeout into MaxRetryError(ReadTimeoutError), which requests raises as
requests.ConnectionError, not requests.Timeout, so shared/kaizala.py's `except requests.Timeout` branch misses it:
the call fails with "Kaizala's identity service is unavailable right now" instead of "did not answer in time", and
logs `kaizala request failed: ConnectionError` (a WARNING per hang). The request that made the call still answers
"did not answer in time" (it stops waiting at its own deadline first), but a request that joined the call later
(single flight) gets the call's own error, fast: the fleet soak once saw such a 503 after 0.10 s with Kaizala
healthy (the call had hung on a loaded machine). The status (503 identity_unavailable) is as documented, so this is
xfail(strict): it fails once fixed, to remove the marker.
"""

import time

import pytest

from shared.errors import IdentityUnavailable
from shared.kaizala import KaizalaClient
from tests.helpers import Reply, identity_payload, make_jwt, upstream_server


@pytest.mark.xfail(strict=True, reason="shared/kaizala.py: a read timeout surfaces as requests.ConnectionError")
def test_a_hang_is_reported_as_too_slow(no_secrets_in_logs) -> None:
    with (
        upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=1.5)) as up,
        pytest.raises(IdentityUnavailable) as raised,
    ):
        KaizalaClient().fetch_identity(make_jwt(), up.url, time.monotonic() + 0.3)
    message = raised.value.message
    logged = [line for line in no_secrets_in_logs.lines if "kaizala request failed" in line]
    assert ("did not answer in time" in message, logged) == (True, []), (message, logged)
