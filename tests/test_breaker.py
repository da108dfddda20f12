"""The circuit breaker, on a fake clock: when it opens, what it lets through, and one WARNING per change."""

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


def test_opens_after_consecutive_failures_probes_once_and_warns_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kaizala_auth")
    clock = Clock()
    breaker = Breaker("the dependency at host:1", failures_to_open=3, open_seconds=5, clock=clock)
    assert breaker.allow()
    assert not breaker.failed(OSError())
    breaker.succeeded()  # a success in between: failures must be consecutive
    assert [breaker.failed(OSError()) for _ in range(3)] == [False, False, True]
    assert breaker.is_open
    assert not any(breaker.allow() for _ in range(1000))  # skipped, at no cost
    for _ in range(100):
        breaker.failed(TimeoutError())  # calls already in flight failing: no new warning
    clock.now += 5
    assert breaker.allow()  # one probe...
    assert not breaker.allow()  # ...at a time
    breaker.failed(OSError())  # the probe failed: open for another period
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.succeeded()
    assert not breaker.is_open
    assert all(breaker.allow() for _ in range(10))
    for _ in range(50):
        breaker.succeeded()
    assert warnings(caplog) == [
        "the dependency at host:1 failed 3 times in a row (OSError): skipping it, trying again every 5 s",
        "the dependency at host:1 answers again: using it again",
    ]
