"""Purges: delete a user's shared identities (or all of this deployment's) and tell every instance, and the
listener thread through which this instance hears of purges and drops its in-process copies.

A purge names a user by tag (HMAC of the user id under the deployment's secret): the purge index in Redis and the
message on the channel never hold a user id.
"""

import logging
import os
import threading
import time
from collections.abc import Callable

import redis
from redis.exceptions import ResponseError

from .client import CLUSTER, Client, RedisClient, close, reset_in_forked_child
from .health import Health, describe
from .records import Records

log = logging.getLogger("kaizala_auth")

OnPurge = Callable[[str | None], None]
ALL = "*"  # the message of `purge_all`: forget everything
_NAME_CHARACTERS = frozenset("0123456789abcdef")
_NAME_LENGTH = 40  # sealing.TokenKeys.name: 20 bytes, hex


def _entry_name(member: object) -> str | None:
    """An entry name read from a purge index, or None for anything we never wrote there."""
    if not isinstance(member, bytes) or len(member) != _NAME_LENGTH:
        return None
    name = member.decode("ascii", errors="replace")
    return name if set(name) <= _NAME_CHARACTERS else None


class Purges:
    def __init__(self, client: RedisClient, records: Records) -> None:
        self._client = client
        self._records = records
        self._on_purge: tuple[OnPurge, ...] = ()  # one per in-process cache (Kaizala's, Teams')
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._listener_pid = 0
        self._stop = threading.Event()
        self.subscribed = threading.Event()  # set while the purge subscription is live (tests wait on it)
        self.health = Health(
            client.where,
            subject="the purge subscription to token cache Redis at {where}",
            consequence="this instance hears no purge (its copies still go back to Redis within "
            "TOKEN_CACHE_LOCAL_SECONDS)",
        )
        reset_in_forked_child(self)

    def purge_user(self, user_id: str) -> int | None:
        """Delete the user's shared entries and tell every instance; the number deleted, None if Redis failed.
        Ids are compared trimmed and case-folded (`sealing.user_id_form`), as the blocklists compare them.

        Whatever a Redis writer put in the user's purge index never stops a purge: a member that is not one of
        our entry names is skipped, an index of the wrong type is deleted unread, and the purge is published."""
        records = self._records
        tag = records.user_tag(user_id)
        index = records.index_key(tag)

        def purge() -> int:
            redis = self._client.redis
            try:
                members: set[bytes] = redis.smembers(index)  # type: ignore[assignment]  # sync client
            except ResponseError as error:
                if not str(error).startswith("WRONGTYPE"):
                    raise  # denied, or anything else: the purge did not happen
                members = set()  # not a set (a writer put it there): it lists nothing we can read
            names = [name for name in (_entry_name(member) for member in members) if name is not None]
            deleted = 0
            if names:
                pipe = redis.pipeline(transaction=False)
                for name in names:
                    pipe.delete(records.entry_key(name))
                # On a cluster each shard deletes its own keys; the replies still come back in the order queued.
                deleted = sum(int(reply) for reply in pipe.execute())
            redis.delete(index)  # only once its entries are gone: a purge run again finds what a failed one left
            redis.publish(records.channel, tag)
            return deleted

        return self._client.call(purge, "purge_user", writes=True)

    def purge_all(self) -> int | None:
        """Delete every shared identity of this deployment (on every shard) and tell every instance; None if
        Redis failed."""
        records = self._records

        def purge() -> int:
            redis = self._client.redis
            deleted = 0
            # Entries are counted; the purge indexes that listed them are deleted too, uncounted. On a cluster,
            # redis-py's scan_iter walks every primary in turn.
            for pattern, count in ((records.entry_key("*"), True), (records.index_key("*"), False)):
                batch: list[bytes] = []
                for key in redis.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) == 500:
                        deleted += self._delete(batch, count=count)
                        batch = []
                deleted += self._delete(batch, count=count)
            redis.publish(records.channel, ALL)
            return deleted

        return self._client.call(purge, "purge_all", writes=True)

    def subscribe(self, on_purge: OnPurge) -> None:
        """Call `on_purge(user_tag)` (or `on_purge(None)`: forget everything) from a daemon thread whenever a purge
        is published.

        A purge published while the subscription was lost is not heard; it is honoured anyway within
        TOKEN_CACHE_LOCAL_SECONDS, because an in-process copy asks the fleet again by then (and the purge deleted
        the fleet's entries). So a lost subscription does not make every instance forget everything at once,
        which after a failover would send every user of every instance to Kaizala together."""
        self._on_purge = (*self._on_purge, on_purge)
        self.ensure_listener()

    def user_tag(self, user_id: str) -> str:
        """The tag `on_purge` receives for `user_id`: compare it with the tags of locally cached identities."""
        return self._records.user_tag(user_id)

    def ensure_listener(self) -> None:
        """Start the listener thread if there is a subscriber and this process has none (a forked child starts
        its own)."""
        if not self._on_purge or self._stop.is_set() or self._listener_pid == os.getpid():
            return
        with self._lock:
            if self._listener_pid == os.getpid():
                return
            listener = threading.Thread(target=self._listen, name="kaizala-purge-listener", daemon=True)
            try:
                listener.start()
            except RuntimeError:  # no thread to be had now (interpreter exiting, limits): the next request tries
                log.warning("the purge listener could not start: this instance hears no purge until it does")
                return
            self._listener, self._listener_pid = listener, os.getpid()

    def close(self) -> None:
        """Stop the listener (waiting for it a little)."""
        self._stop.set()
        listener = self._listener
        if listener is not None and listener.is_alive() and listener is not threading.current_thread():
            listener.join(timeout=2)

    def _delete(self, keys: list[bytes], *, count: bool) -> int:
        if not keys:
            return 0
        pipe = self._client.redis.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        deleted = sum(int(reply) for reply in pipe.execute())
        return deleted if count else 0

    def _listen(self) -> None:
        # Its own connection: a subscribed connection can do nothing else, and waits longer than one operation.
        # A PING every few seconds of silence: a connection that died without a word (a network cut, a failover)
        # is noticed and replaced instead of waiting forever for purges that can no longer arrive. Classic
        # pub/sub, not sharded: a cluster carries a PUBLISH to every node, so a subscriber on any one hears it.
        subscriber: Client | None = None
        pause = 0.1
        while not self._stop.is_set():
            try:
                if subscriber is None:
                    subscriber = self._client.connect(max(self._client.timeout, 1.0), 2, health_check_seconds=5)
                with subscriber.pubsub() as pubsub:  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                    pubsub.subscribe(self._records.channel)
                    self._await_confirmation(pubsub)
                    self.health.succeeded(writes=True)
                    pause = 0.1
                    while not self._stop.is_set():
                        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                        if message is not None and message.get("type") == "message":
                            data = bytes(message["data"]).decode(errors="replace")
                            self._deliver(None if data == ALL else data)
            except Exception as error:  # noqa: BLE001 - reconnect, whatever broke
                cause = describe(error, timeout_ms=self._client.timeout_ms)
                log.debug("purge subscription to %s lost: %s", self._client.where, cause.kind)
                if cause.lasting:  # a connection lost is routine (a failover); a subscription refused is not
                    self.health.failed(cause, opened=False, open_seconds=0, failures=1)
                if subscriber is not None and self._client.kind == CLUSTER:
                    close(subscriber)  # a cluster's subscriber may sit on the node that failed: pick again
                    subscriber = None
            finally:
                self.subscribed.clear()
            self._stop.wait(pause)
            pause = min(pause * 2, 1.0)
        if subscriber is not None:
            close(subscriber)

    def _await_confirmation(self, pubsub: "redis.client.PubSub") -> None:
        give_up = time.monotonic() + 2.0
        while time.monotonic() < give_up:
            message = pubsub.get_message(timeout=0.25)
            if message is not None and message.get("type") == "subscribe":
                self.subscribed.set()
                return
        raise TimeoutError("no subscribe confirmation")

    def _deliver(self, tag: str | None) -> None:
        for callback in self._on_purge:
            try:
                callback(tag)
            except Exception:
                log.exception("on_purge failed")

    def after_fork_in_child(self) -> None:
        # The listener thread does not exist in the child: the next lookup or subscribe starts one there.
        self._lock = threading.Lock()
        self._listener = None
        self._listener_pid = 0
        self._stop = threading.Event()
        self.subscribed = threading.Event()
        self.health.reset()
