"""What a forked child must start afresh: locks another thread held at fork stay held in the child, and threads
(calls in flight, listeners, timers) do not exist there. One idiom for every object that owns such state."""

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def reset_in_child(owner: T, reset: Callable[[T], None]) -> None:
    """Run `reset(owner)` in every child forked while `owner` is alive (a weak reference: nothing is kept alive)."""
    ref = weakref.ref(owner)

    def in_child() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=in_child)
