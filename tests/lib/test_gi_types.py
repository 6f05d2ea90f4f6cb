"""Every GI type without a GType (``Gst.PadProbeInfo``, ``Gst.MapInfo``...) has its Python class
made when GStreamer is initialised, in one thread, by the infer worker's readers
(:func:`ovbus.rtsp.init`) and by the capture worker (:mod:`services.capture.gst`).

PyGObject makes such a class on first use and does not share it between threads that first use
it at once: each gets a class of its own, and the methods of one refuse the other's instances
("argument self: Expected Gst.PadProbeInfo, but got gi.repository.Gst.PadProbeInfo") for the
process's life. In the capture worker, 17 producers starting at once raced for
``Gst.PadProbeInfo`` in their pad probes; the probes raised on every event, PyGObject dropped
those events, and some cameras were never served a frame (CI, twice). Each check runs in a new
interpreter: this one made its classes long ago."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.stack import ROOT

#: What a new interpreter prints: the types without a GType of ``modules`` that have no class
#: yet (a ``__getattr__`` still to come, in whichever thread uses them first).
_CHECK = """
import gi
from gi.module import get_introspection_module
from gi.repository import GObject
{setup}
missing = []
for module in ({modules},):
    namespace = module.__name__.rpartition(".")[2]
    # made: in the introspection module, or an override's own (GLib's overrides)
    made = {{*vars(get_introspection_module(namespace)), *vars(module)}}
    for info in gi.Repository.get_default().get_infos(namespace):
        gtype = getattr(info, "get_g_type", None)
        if gtype is not None and gtype() == GObject.TYPE_NONE and info.get_name() not in made:
            missing.append(namespace + "." + info.get_name())
print(" ".join(missing) or "none")
"""


def _unmade(setup: str, modules: str) -> str:
    script = _CHECK.format(setup=setup, modules=modules)
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("setup", "modules"),
    [
        (
            "from ovbus import rtsp\nGst = rtsp.init()\n"
            "from gi.repository import GLib, GstRtsp, GstVideo",
            "Gst, GstVideo, GstRtsp, GLib",
        ),
        (
            "from services.capture.gst import GLib, Gst, GstPbutils, GstRtsp, GstRtspServer, "
            "GstVideo",
            "GLib, Gst, GstPbutils, GstRtsp, GstRtspServer, GstVideo",
        ),
    ],
    ids=["infer-readers", "capture"],
)
def test_types_without_a_gtype_are_made_at_init(setup: str, modules: str) -> None:
    assert _unmade(setup, modules) == "none"


def test_the_check_sees_types_not_made_yet() -> None:
    """Without the registration, the probe's and the mapping's types are among those left to
    the first thread (so the check above can fail)."""
    unmade = _unmade(
        "gi.require_version('Gst', '1.0')\nfrom gi.repository import Gst\nGst.init(None)", "Gst"
    ).split()
    assert "Gst.PadProbeInfo" in unmade and "Gst.MapInfo" in unmade, unmade
