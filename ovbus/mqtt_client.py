"""paho-mqtt's client with publishes written by the thread that publishes (:class:`DirectClient`).

paho's threaded mode (``loop_start``) does all socket I/O in its network thread: a ``publish``
from another thread queues the packet and writes a byte to a socket pair to wake that thread,
which then wakes in ``select``, takes the GIL and writes the packet. In the infer worker that is
one more thread woken for every message of every result, and each wake-up waits for the GIL
behind the job threads: the MQTT thread spent 0.17-0.25 core-ms per result (issue 25), and the
socket-pair write was the job threads' largest self time in ``py-spy`` (9 % of their samples).

:class:`DirectClient` writes a PUBLISH straight to the socket from the publishing thread (which
holds the GIL already) when nothing else waits to be written before it; everything else is as
paho does it:

- only on a plain TCP socket of a connected client: a TLS socket (OpenSSL's ``SSL`` object is
  not safe for a read in one thread and a write in another) and paho's websockets wrapper (its
  own buffers) keep paho's path, as does a client still connecting (CONNECT goes first);
- writes do not interleave: paho's own ``_packet_write`` (its network thread: CONNECT,
  SUBSCRIBE, acknowledgements, pings, what a full socket left over) and the socket's closing take
  the same lock as a direct write, so a packet's bytes are never split by another's, and no
  write reaches a socket being closed (or a new one made in its place);
- a packet the socket does not take whole (its buffer full) leaves the rest queued behind
  anything else, in order, and wakes the network thread as paho does; a socket error leaves the
  packet to paho's path (the network thread then finds the connection lost, as before);
- with an ``on_publish`` callback set, paho's path (the callback runs where paho runs it).

It overrides three of paho's private methods (``_packet_queue``, ``_packet_write``,
``_sock_close``), so paho is pinned (``pyproject.toml``); ``tests/lib/test_mqtt_client.py``
checks the behaviour against a real broker and fails if paho changes under it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

__all__ = ["DirectClient"]

_PUBLISH = PacketTypes.PUBLISH << 4


class DirectClient(mqtt.Client):
    """``paho.mqtt.client.Client`` whose publishes go out from the publishing thread (see the
    module docstring). ``direct_writes`` counts the packets written that way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_lock = threading.RLock()
        self.direct_writes = 0

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if (command & 0xF0) != _PUBLISH or self.on_publish is not None:
            return super()._packet_queue(command, packet, mid, qos, info)
        with self._write_lock:
            sock = self._sock
            if (
                self._out_packet  # others wait to be written first: keep the order
                or not self.is_connected()
                or not isinstance(sock, socket.socket)
                or isinstance(sock, ssl.SSLSocket)
            ):
                return super()._packet_queue(command, packet, mid, qos, info)
            try:
                sent = sock.send(packet)
            except BlockingIOError:
                sent = 0
            except OSError:  # paho's network thread finds the connection lost and says so
                return super()._packet_queue(command, packet, mid, qos, info)
            with self._msgtime_mutex:
                self._last_msg_out = mqtt.time_func()  # paho's clock, for its keep-alive
            if sent < len(packet):  # the socket's buffer is full: the rest waits, in order
                return super()._packet_queue(command, packet[sent:], mid, qos, info)
            self.direct_writes += 1
            if qos == 0 and info is not None:
                info._set_as_published()
            return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_write(self) -> MQTTErrorCode:
        with self._write_lock:
            return super()._packet_write()

    def _sock_close(self) -> None:
        with self._write_lock:
            super()._sock_close()
