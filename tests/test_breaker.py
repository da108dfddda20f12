"""The circuit breaker, on a fake clock: when it opens, what it lets through, and that it says so once."""

import logging

import pytest

from shared.fleet.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_opens_after_consecutive_failures_probes_once_and_reports_opening_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    clock = Clock()
    breaker = Breaker(failures_to_open=3, open_seconds=5, clock=clock)
    assert breaker.allow()
    assert not breaker.failed()
    breaker.succeeded()  # a success in between: failures must be consecutive
    assert [breaker.failed() for _ in range(3)] == [False, False, True]
    assert breaker.is_open
    assert not any(breaker.allow() for _ in range(1000))  # skipped, at no cost
    # Calls already in flight failing: it opened once, and says so once.
    assert not any(breaker.failed() for _ in range(100))
    clock.now += 5
    assert breaker.allow()  # one probe...
    assert not breaker.allow()  # ...at a time
    assert not breaker.failed()  # the probe failed: open for another period (still the same opening)
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.succeeded()
    assert not breaker.is_open
    assert all(breaker.allow() for _ in range(10))
    for _ in range(50):
        breaker.succeeded()
    assert warnings(caplog) == []  # shared.fleet.health tells the log, naming the cause
