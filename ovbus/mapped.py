"""A GStreamer buffer's memory as a numpy view, without a copy, for the reader's frame path
(:mod:`ovbus.rtsp`).

PyGObject's ``Gst.Buffer.map`` hands the mapped memory to Python as ``bytes``: a copy of the
whole decoded frame (1.4 MB at 720p) made before anything looks at it, the largest cost of a
result in the infer worker's own threads (issue 25). :func:`mapped` maps the buffer through
``gst_buffer_map`` itself and yields a read-only ``uint8`` view of the memory, valid only inside
the ``with`` block (the buffer is unmapped when it ends): the caller copies or scales out of it
what it keeps, in one pass.

The buffer's C pointer is what PyGObject's boxed wrappers hash to (``hash(buffer)``). That is
checked once (:func:`available`: against the pointer the wrapper's ``repr`` shows, before
anything reads through it, then on a buffer of known content); where it does not hold, or
libgstreamer cannot be loaded, :func:`mapped` yields ``None`` and the reader maps the usual way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from ovbus.log import get_logger

log = get_logger(__name__)

_GST_MAP_READ = 1


class _MapInfo(ctypes.Structure):
    """``GstMapInfo`` (gst/gstmemory.h): memory, flags, data, size, maxsize, user_data[4],
    _gst_reserved[GST_PADDING = 4]."""

    _fields_ = [
        ("memory", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("maxsize", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p * 4),
        ("_gst_reserved", ctypes.c_void_p * 4),
    ]


_lock = threading.Lock()
_lib: Any = None
_checked: bool | None = None


def _load() -> Any:
    name = ctypes.util.find_library("gstreamer-1.0") or "libgstreamer-1.0.so.0"
    lib = ctypes.CDLL(name)
    lib.gst_buffer_map.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo), ctypes.c_int]
    lib.gst_buffer_map.restype = ctypes.c_int
    lib.gst_buffer_unmap.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo)]
    lib.gst_buffer_unmap.restype = None
    lib.gst_buffer_get_size.argtypes = [ctypes.c_void_p]
    lib.gst_buffer_get_size.restype = ctypes.c_size_t
    return lib


def available(gst: Any) -> bool:
    """Whether buffers can be mapped without a copy here (checked once, on a known buffer)."""
    global _lib, _checked
    with _lock:
        if _checked is None:
            lib, reason = _check(gst)
            if reason:
                log.info("buffers mapped with a copy", reason=reason)
            _lib, _checked = lib, lib is not None
        return _checked


def _check(gst: Any) -> tuple[Any, str]:
    """libgstreamer when ``hash(buffer)`` is the buffer's pointer (else ``None`` and why)."""
    expected = bytes(range(256)) * 3
    try:
        lib = _load()
        buffer = gst.Buffer.new_wrapped(expected)
        pointer = hash(buffer)
        # before anything reads through it: the pointer PyGObject itself shows for the buffer
        shown = re.search(r"\(GstBuffer at (0x[0-9a-fA-F]+)\)", repr(buffer))
        if shown is None or int(shown.group(1), 16) != pointer:
            return None, "a buffer's hash is not its pointer"
        if not lib.gst_buffer_get_size(pointer) == len(expected) == buffer.get_size():
            return None, "a buffer's hash is not its pointer"
        info = _MapInfo()
        if not lib.gst_buffer_map(pointer, ctypes.byref(info), _GST_MAP_READ):
            return None, "gst_buffer_map failed"
        try:
            same = ctypes.string_at(info.data, info.size) == expected
        finally:
            lib.gst_buffer_unmap(pointer, ctypes.byref(info))
    except (OSError, AttributeError, TypeError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    return (lib, "") if same else (None, "the mapped memory is not the buffer's content")


@contextmanager
def mapped(buffer: Any) -> Iterator[npt.NDArray[np.uint8] | None]:
    """A read-only view of ``buffer``'s memory for the ``with`` block (``None``: it cannot be
    mapped this way, or not at all). Nothing may keep the view past the block."""
    lib = _lib
    if lib is None:
        yield None
        return
    pointer = hash(buffer)
    info = _MapInfo()
    if not lib.gst_buffer_map(pointer, ctypes.byref(info), _GST_MAP_READ):
        yield None
        return
    try:
        raw = (ctypes.c_uint8 * info.size).from_address(info.data)
        view = np.frombuffer(raw, dtype=np.uint8)
        view.flags.writeable = False
        yield view
    finally:
        lib.gst_buffer_unmap(pointer, ctypes.byref(info))
