"""``free_port`` hands out ports an outgoing connection cannot take before the server binds."""

from __future__ import annotations

import socket

from services.mosquitto import _ephemeral_range, free_port


def test_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low, high = _ephemeral_range()
    assert 1024 < low < high
    for _ in range(20):
        port = free_port()
        assert 20000 <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
