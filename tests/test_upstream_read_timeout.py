"""Found by the fleet soak (not fixed: shared/ is another engineer's): an upstream that accepts the connection but
sends no answer before the deadline is reported as a failed request, not as a slow one.

urllib3's Retry(read=0) turns the read timeout into MaxRetryError(ReadTimeoutError), which requests raises as
requests.ConnectionError, not requests.Timeout; shared/kaizala.py's `except requests.Timeout` branch therefore
misses it: the answer is `503 identity_unavailable` (right) but says "unavailable right now" instead of "did not
answer in time", and the log says `kaizala request failed: ConnectionError` (a WARNING per hang). The status is
as documented, so this is xfail(strict): it fails once fixed, to remove the marker.
"""

import pytest

import ValidateToken
from tests.helpers import Reply, identity_payload, json_of, make_jwt, request, upstream_server


@pytest.mark.xfail(strict=True, reason="shared/kaizala.py: a read timeout surfaces as requests.ConnectionError")
def test_a_hang_is_reported_as_too_slow(monkeypatch, no_secrets_in_logs) -> None:
    with upstream_server(lambda _n, _t: Reply(body=identity_payload(), delay=1.5)) as up:
        monkeypatch.setenv("KAIZALA_IDENTITY_URL", up.url)
        monkeypatch.setenv("KAIZALA_TIMEOUT_SECONDS", "0.3")
        response = ValidateToken.main(request(token=make_jwt()))
    assert response.status_code == 503
    assert "did not answer in time" in json_of(response)["message"]
    assert not any("kaizala request failed" in line for line in no_secrets_in_logs.lines)
