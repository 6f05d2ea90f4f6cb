"""The MQTT v5 PUBLISH properties of an outgoing message (:func:`publish_properties`), for
:class:`ovbus.connection.Connection`.

A plain message's properties (content type, expiry) are one object per pair, shared by every
message of that kind and packed once (:class:`_Packed`): building and packing them per message
was a share of each result's cost (issue 25). Requests and replies (response topic, correlation
data) build their own.
"""

from __future__ import annotations

import functools

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class _Packed(Properties):
    """PUBLISH properties that never change once made, packed once: paho packs a message's
    properties each time it sends one (0.07 ms per result message in a profile)."""

    _packed: bytes | None = None

    def pack(self) -> bytes:
        if self._packed is None:  # paho's __setattr__ takes property names only
            object.__setattr__(self, "_packed", bytes(super().pack()))  # type: ignore[no-untyped-call]
        assert self._packed is not None
        return self._packed


def _plain(props: Properties, content_type: str | None, expiry_s: int | None) -> Properties:
    """``props`` with a plain message's content type and expiry, where given."""
    if content_type:
        props.ContentType = content_type
    if expiry_s:
        props.MessageExpiryInterval = expiry_s
    return props


@functools.lru_cache(maxsize=64)
def shared(content_type: str | None, expiry_s: int | None) -> Properties:
    """The properties of a plain message, made once per pair: paho only reads them."""
    return _plain(_Packed(PacketTypes.PUBLISH), content_type, expiry_s)  # type: ignore[no-untyped-call]


def publish_properties(
    *,
    retain: bool,
    content_type: str | None = None,
    expiry_s: int | None = None,
    response_topic: str | None = None,
    correlation: bytes | None = None,
) -> Properties | None:
    """The properties of one message (``None``: it needs none). A retained message never
    expires (its expiry is dropped): it is the state until replaced."""
    expiry = int(expiry_s) if expiry_s and not retain else None
    if not (response_topic or correlation):
        return shared(content_type or None, expiry) if content_type or expiry else None
    props = _plain(Properties(PacketTypes.PUBLISH), content_type, expiry)  # type: ignore[no-untyped-call]
    if response_topic:
        props.ResponseTopic = response_topic
    if correlation:
        props.CorrelationData = correlation
    return props
