"""The library's readers of the retained tree take names from topics through ``Topics.parse``: a
topic whose name level is not a valid name (anyone can publish one on an open broker) is skipped,
never taken as a camera or a node. Each test has the valid topics as its positive control."""

from __future__ import annotations

import pytest

from ovbus.bus import Bus
from ovbus.errors import RequestError
from ovbus.notebook import NotebookError, fleet, wait_for_camera
from ovbus.payloads import Birth, StreamDescriptor
from ovbus.replay import infer_node

BAD_NAMES = ["bad name", "..", "é"]


def descriptor(camera: str) -> StreamDescriptor:
    return StreamDescriptor(
        camera=camera,
        url=f"rtsp://127.0.0.1:8554/{camera}",
        width=64,
        height=48,
        fps=5,
        node="cap-a",
        source="testsrc",
    )


def publish_raw(bus: Bus, levels: list[str], payload: bytes) -> None:
    """A retained message on ``<prefix>/<levels>`` whatever the levels are (a foreign client)."""
    bus.publish("/".join([bus.topics.prefix, *levels]), payload, qos=1, retain=True, wait=True)


def test_announced_cameras_are_the_valid_names_only(client: Bus) -> None:
    for cam in ("a", "b"):
        client.publish(client.topics.stream(cam), descriptor(cam), retain=True, wait=True)
    for bad in BAD_NAMES:
        publish_raw(client, ["cameras", bad, "stream"], descriptor("a").model_dump_json().encode())
    with pytest.raises(NotebookError) as refused:
        wait_for_camera(client, "missing", timeout=2)
    assert "announced: ['a', 'b']" in str(refused.value)
    assert sorted(fleet(client).cameras) == ["a", "b"]


def birth(node: str, kind: str) -> Birth:
    return Birth.model_validate({"node": node, "kind": kind, "version": "t", "host": "h"})


def test_the_online_infer_node_is_found_by_its_topic_name(client: Bus) -> None:
    with pytest.raises(RequestError):
        infer_node(client, timeout=2)  # none yet
    # a capture node, an infer node that is offline, then malformed names that say "infer"
    for node, kind, status in (("cap-a", "capture", b"online"), ("inf-a", "infer", b"offline")):
        client.publish(client.topics.birth(node), birth(node, kind), retain=True, wait=True)
        client.publish(client.topics.status(node), status, retain=True, wait=True)
    for bad in BAD_NAMES:
        publish_raw(client, ["nodes", bad, "status"], b"online")
        publish_raw(client, ["nodes", bad, "birth"], birth("x", "infer").model_dump_json().encode())
    with pytest.raises(RequestError):
        infer_node(client, timeout=2)
    client.publish(client.topics.status("inf-a"), b"online", retain=True, wait=True)
    assert infer_node(client, timeout=2) == "inf-a"
