"""An upstream that accepts the connection but sends no answer before the deadline is too slow, not failed.

urllib3's Retry(read=0) turns the read timeout into MaxRetryError(ReadTimeoutError), which requests raises as
requests.ConnectionError, not requests.Timeout. Found by the fleet soak: the call failed with "unavailable right
now" and a WARNING per hang, and a request that joined the call got that error early.
"""

import time

import pytest

from shared.errors import IdentityUnavailable
from shared.providers.kaizala import KaizalaClient
from tests.helpers import Reply, identity_payload, make_jwt, upstream_server


def test_a_hang_is_reported_as_too_slow(no_secrets_in_logs) -> None:
    with (
        upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=1.5)) as up,
        pytest.raises(IdentityUnavailable) as raised,
    ):
        KaizalaClient().fetch_identity(make_jwt(), up.url, time.monotonic() + 0.3)
    message = raised.value.message
    logged = [line for line in no_secrets_in_logs.lines if "kaizala request failed" in line]
    assert ("did not answer in time" in message, logged) == (True, []), (message, logged)
