"""The relay with real GStreamer medias (``appsrc ! fakesink`` pipelines stand in for the RTSP
server's medias): new caps of the same codec go to the open medias in-band; a new codec (a
pass-through source whose codec changed) ends them, so readers reconnect to a media whose
payloader carries it."""

from __future__ import annotations

from typing import Any

from services.capture.gst import Gst
from services.capture.relay import Relay


def media() -> tuple[Any, Any]:
    pipeline = Gst.parse_launch("appsrc name=src is-live=true format=time ! fakesink sync=false")
    pipeline.set_state(Gst.State.PLAYING)
    return pipeline, pipeline.get_by_name("src")


def codec_of(relay: Relay) -> str | None:
    return relay.codec


def test_codec_change_ends_the_medias() -> None:
    relay = Relay("cam")
    pipeline, appsrc = media()
    released: list[bool] = []
    try:
        h264 = Gst.Caps.from_string("video/x-h264,stream-format=byte-stream,alignment=au")
        relay.set_caps(h264)
        assert codec_of(relay) == "h264"
        relay.attach(appsrc, lambda: released.append(True))
        assert appsrc.get_property("caps").is_equal(h264)
        # same codec, another size (a set): in-band, the media stays
        smaller = Gst.Caps.from_string(
            "video/x-h264,stream-format=byte-stream,alignment=au,width=320,height=240"
        )
        relay.set_caps(smaller)
        assert relay.readers == 1 and released == []
        assert appsrc.get_property("caps").is_equal(smaller)
        # another codec: the media ends (end of stream) and is released
        relay.set_caps(Gst.Caps.from_string("image/jpeg,width=320,height=240"))
        assert codec_of(relay) == "mjpeg"
        assert relay.readers == 0 and released == [True]
        message = pipeline.get_bus().timed_pop_filtered(5 * Gst.SECOND, Gst.MessageType.EOS)
        assert message is not None
    finally:
        pipeline.set_state(Gst.State.NULL)
