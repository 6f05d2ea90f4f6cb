"""The one place the capture worker imports GStreamer (PyGObject), with the versions it needs."""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstPbutils", "1.0")

from gi.repository import GLib, Gst, GstPbutils, GstRtsp, GstRtspServer, GstVideo  # noqa: E402

from ovbus.rtsp_pipeline import register_types  # noqa: E402

Gst.init(None)
# at import, before any camera, client or server thread: the classes of the types without a
# GType, made once here, not raced for by the producers' pad probes (see register_types)
register_types(GLib, Gst, GstPbutils, GstRtsp, GstRtspServer, GstVideo)

__all__ = [
    "GLib",
    "Gst",
    "GstPbutils",
    "GstRtsp",
    "GstRtspServer",
    "GstVideo",
    "element_exists",
    "whole_frames_only",
]


def element_exists(name: str) -> bool:
    """Whether a GStreamer element factory is installed."""
    return Gst.ElementFactory.find(name) is not None


def whole_frames_only(pipeline: Any) -> None:
    """Every libav video decoder ``decodebin`` adds to ``pipeline`` puts out no frame decoded
    without its references. A producer joins a network camera's stream between key frames (as
    any client does); decoded, the frames before the stream recovers (an IDR, a recovery point
    or an intra frame: libav's own test) are flat grey, and were served and taken as frames."""

    def added(_bin: Any, _sub: Any, element: Any) -> None:
        factory = element.get_factory()
        if factory is not None and factory.get_name().startswith("avdec_"):
            element.set_property("output-corrupt", False)

    pipeline.connect("deep-element-added", added)
