"""The one place the capture worker imports GStreamer (PyGObject), with the versions it needs."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstPbutils", "1.0")

from gi.repository import GLib, Gst, GstPbutils, GstRtspServer, GstVideo  # noqa: E402

Gst.init(None)

__all__ = ["GLib", "Gst", "GstPbutils", "GstRtspServer", "GstVideo", "element_exists"]


def element_exists(name: str) -> bool:
    """Whether a GStreamer element factory is installed."""
    return Gst.ElementFactory.find(name) is not None
