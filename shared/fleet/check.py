"""`python -m shared.purge --check`: whether the fleet cache works with these settings, step by step, as a deployer
runs it before (or after) going live: the server's kind, a sealed probe written, read and deleted, a purge message
published and heard. Each step's failure is named the way the app's WARNINGs name it.
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..identity import Identity
from .client import CLUSTER, RedisClient, close
from .health import describe
from .records import Records

PROBE_SECONDS = 10  # the probe key's life, should the delete never arrive


class CheckFailed(Exception):
    """A step's own finding (its text is what the report says), as opposed to Redis failing."""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    ok: bool
    detail: str


def check(client: RedisClient, records: Records) -> list[Step]:
    """Every step, in order; the first that fails is the last."""
    steps: list[Step] = []

    def step(name: str, run: Callable[[], str]) -> bool:
        began = time.perf_counter()
        try:
            detail = run()
        except CheckFailed as finding:
            steps.append(Step(name, False, str(finding)))
            return False
        except Exception as error:  # noqa: BLE001 - named, not raised: this is a report
            steps.append(Step(name, False, describe(error, timeout_ms=client.timeout_ms).text))
            return False
        steps.append(Step(name, True, f"{detail} ({(time.perf_counter() - began) * 1000:.1f} ms)"))
        return True

    if not step("server", lambda: _kind(client)):
        return steps
    if not step("write, read, delete", lambda: _probe(client, records)):
        return steps
    step("purge messages", lambda: _publish_and_hear(client, records))
    return steps


def _kind(client: RedisClient) -> str:
    redis = client.redis  # detects the kind
    if client.kind == CLUSTER:
        primaries = len(redis.get_primaries())  # type: ignore[union-attr]  # RedisCluster
        return f"a Redis Cluster ({primaries} primaries)"
    return "a single endpoint (one node, or a proxy in front of shards)"


def _probe(client: RedisClient, records: Records) -> str:
    token = "probe." + os.urandom(16).hex()
    keys = records.keys(token)
    identity = Identity(id="probe", name=None, phone_number=None, picture_url=None, action_package_id=None)
    key = records.entry_key(keys.name)
    value = records.identity(keys, identity, time.time() + PROBE_SECONDS)
    redis = client.redis
    redis.set(key, value, px=PROBE_SECONDS * 1000)
    read = redis.get(key)
    redis.delete(key)
    opened = records.state(keys, [read, None]).entry
    if opened is None or opened.identity.id != "probe":
        raise CheckFailed("the probe read back is not the one written (another deployment's secret? a proxy?)")
    return "a sealed probe written, read back and deleted"


def _publish_and_hear(client: RedisClient, records: Records) -> str:
    """Subscribe on a connection of its own (as every instance does) and hear a message published on another:
    on a cluster, published to one node and heard on whichever the subscriber sits on."""
    subscriber = client.connect(max(client.timeout, 1.0), 2)
    message = "check:" + os.urandom(8).hex()  # a tag no identity has: instances that hear it forget nothing
    try:
        with subscriber.pubsub() as pubsub:  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            pubsub.subscribe(records.channel)
            give_up = time.monotonic() + max(2.0, 4 * client.timeout)
            published = False
            while time.monotonic() < give_up:
                got = pubsub.get_message(timeout=0.1)
                if got is not None and got.get("type") == "subscribe" and not published:
                    client.redis.publish(records.channel, message)
                    published = True
                elif got is not None and got.get("type") == "message" and bytes(got["data"]).decode() == message:
                    return "published and heard on the purge channel"
    finally:
        close(subscriber)
    raise CheckFailed("the purge message was not heard: purges would not reach the instances")
