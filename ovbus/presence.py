"""A node's presence on the bus, for its connection (``ovbus.connection``): the retained
``offline`` last will, the retained ``online`` status and what follows it (the birth) on every
connect, and ``offline`` on a clean close.

``online`` means served: a node whose worker makes its subscriptions after the connect (a
request server, a state it follows) holds its presence (:meth:`Presence.hold`, which ``Node``
does) until :meth:`Presence.serving` (``Node.run_until_stopped``), so that a request sent the
moment the node shows ``online`` reaches a handler, on a clean session too (where the broker
has nowhere to keep it). Subscriptions made before the connect are renewed before ``online``
on every connect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt

from ovbus.log import get_logger
from ovbus.topics import Topics

log = get_logger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


class Presence:
    """The presence of node ``node`` (``None``: a client that is not a node, which has none),
    and what is announced after its ``online`` (``more``: ``Bus`` publishes the birth)."""

    def __init__(
        self,
        client: mqtt.Client,
        topics: Topics,
        node: str | None,
        more: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self.status = None if node is None else str(topics.status(node))
        self._more = more
        #: whether ``online`` goes out on connect (off from :meth:`hold` to :meth:`serving`)
        self.announcing = True
        self._lock = threading.Lock()
        if self.status is not None:
            client.will_set(self.status, OFFLINE, qos=1, retain=True)

    def hold(self) -> None:
        """Before the connect: no ``online`` (nor birth) until :meth:`serving`."""
        self.announcing = False

    def serving(self) -> None:
        """The node serves: ``online`` and birth now if connected, and on every connect."""
        with self._lock:  # against a connect that found ``announcing`` still off
            if not self.announcing:
                self.announcing = True
                if self._client.is_connected():
                    self._announce()

    def connected(self) -> None:
        """On every connect (paho's network thread), after the subscriptions are renewed."""
        with self._lock:
            if self.announcing:
                self._announce()

    def offline(self, timeout: float) -> None:
        """A clean close: the retained ``offline``, acknowledged (or ``timeout``)."""
        if self.status is None:
            return
        try:
            self._client.publish(self.status, OFFLINE, qos=1, retain=True).wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            log.warning("could not publish offline status", error=str(e))

    def _announce(self) -> None:
        if self.status is None:
            return
        self._client.publish(self.status, ONLINE, qos=1, retain=True)
        if self._more is not None:
            self._more()
