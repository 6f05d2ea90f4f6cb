"""Publishes written by the publishing thread (``ovbus/mqtt_client.py``), against a real
Mosquitto: paho's network thread is not woken for them, many threads' packets never mix on the
socket (also those the socket takes only in part), and TLS keeps paho's own path."""

from __future__ import annotations

import hashlib
import socket
import threading
from typing import Any

from ovbus.bus import Bus
from ovbus.messages import Message
from ovbus.mqtt_client import DirectClient
from services.mosquitto import Mosquitto
from tests.certs import Certs
from tests.conftest import TLS


class _CountedWakes:
    """Stands in for paho's socket-pair end that wakes its network thread: counts the wakes."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.wakes = 0

    def send(self, data: bytes) -> int:
        self.wakes += 1
        return int(self._sock.send(data))

    def close(self) -> None:
        self._sock.close()


def _client(bus: Bus) -> DirectClient:
    client = bus.connection._client
    assert isinstance(client, DirectClient)
    return client


def _collect(bus: Bus, topic: str, expected: int) -> tuple[list[Message], threading.Event]:
    got: list[Message] = []
    done = threading.Event()
    lock = threading.Lock()

    def on(message: Message) -> None:
        with lock:
            got.append(message)
            if len(got) == expected:
                done.set()

    bus.subscribe(topic, qos=1, callback=on, queue_size=10000)
    return got, done


def _publish_from_threads(bus: Bus, topic: str, threads: int, each: int, size: int) -> None:
    def run(t: int) -> None:
        for i in range(each):
            head = f"{t}:{i}:".encode()
            body = hashlib.sha256(head).digest() * (size // 32)
            bus.publish(topic, head + body, qos=1)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _check(got: list[Message], threads: int, each: int, size: int) -> None:
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for message in got:
        t, i, body = message.payload.split(b":", 2)
        head = f"{int(t)}:{int(i)}:".encode()
        assert body == hashlib.sha256(head).digest() * (size // 32), f"message {head!r} mixed"
        seen[int(t)].append(int(i))
    assert seen == {t: list(range(each)) for t in range(threads)}  # all, in each thread's order


def test_publishes_go_out_from_the_publishing_thread_without_waking_pahos(
    broker: Mosquitto, prefix: str, client: Bus
) -> None:
    topic = f"{prefix}/direct"
    got, done = _collect(client, topic, 4 * 100)
    with Bus(broker.url, prefix=prefix).connect(10) as publisher:
        paho = _client(publisher)
        sock = paho._sock
        assert isinstance(sock, socket.socket)
        # room for every message whatever the broker's pace: none is left over for paho's thread
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
        wakes = _CountedWakes(paho._sockpairW)
        paho._sockpairW = wakes  # type: ignore[assignment]
        _publish_from_threads(publisher, topic, threads=4, each=100, size=256)
        assert done.wait(30), f"{len(got)} of 400 arrived"
        # paho's own path wakes its thread once a message (400); a few may queue behind a ping
        assert paho.direct_writes >= 380 and wakes.wakes <= 20, (paho.direct_writes, wakes.wakes)
    _check(got, threads=4, each=100, size=256)


def test_packets_the_socket_takes_in_part_are_not_mixed_with_other_threads(
    broker: Mosquitto, prefix: str, client: Bus
) -> None:
    """200 KB messages from 4 threads at once: a non-blocking socket takes each in parts when
    its buffer fills, and the rest must go out before any other packet."""
    topic = f"{prefix}/large"
    got, done = _collect(client, topic, 4 * 12)
    with Bus(broker.url, prefix=prefix).connect(10) as publisher:
        sock = _client(publisher)._sock
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)  # every message in parts
        _publish_from_threads(publisher, topic, threads=4, each=12, size=200 * 1024)
        assert done.wait(60), f"{len(got)} of 48 arrived"
    _check(got, threads=4, each=12, size=200 * 1024)


def test_tls_keeps_pahos_network_thread_for_every_write(
    tls_broker: Mosquitto, certs: Certs, prefix: str
) -> None:
    """OpenSSL's connection object is not safe for a write in one thread and a read in another:
    over TLS, paho's network thread writes everything, as before."""
    ca = str(certs.ca.path)
    with Bus(tls_broker.tls_url(TLS), prefix=prefix, tls_ca=ca).connect(10) as bus:
        topic = f"{prefix}/tls-direct"
        got, done = _collect(bus, topic, 2 * 20)
        _publish_from_threads(bus, topic, threads=2, each=20, size=256)
        assert done.wait(30), f"{len(got)} of 40 arrived"
        assert _client(bus).direct_writes == 0
    _check(got, threads=2, each=20, size=256)
