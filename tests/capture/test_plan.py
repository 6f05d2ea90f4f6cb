"""Pass-through or encode (``services/capture/plan.py``): plain functions, no GStreamer: which
sources are served as they come, which are encoded and to what, and which webcam mode is
chosen from a device's caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.capture.plan import (
    DEFAULT,
    Mode,
    Native,
    Plan,
    Target,
    Wanted,
    choose_v4l2_mode,
    mode_caps,
    modes_from_caps,
    native_from_caps,
    native_of_source,
    plan,
)
from services.capture.sources import Source, passthrough_description

H264_VGA = Native("h264", 640, 480, 30.0)
NONE = Wanted()


@pytest.mark.parametrize(
    ("native", "wanted", "codec", "passthrough", "expected"),
    [
        # served as it comes: nothing asked for, or what is asked for is what the source makes
        (H264_VGA, NONE, None, True, Plan("h264", True)),
        (H264_VGA, Wanted(640, 480, 30.0), "h264", True, Plan("h264", True)),
        (Native("mjpeg"), NONE, None, True, Plan("mjpeg", True)),
        (Native("h264"), NONE, None, True, Plan("h264", True)),  # an RTSP camera
        # a size or rate change: decode, scale/rate, encode in the source's codec
        (H264_VGA, Wanted(320, 240), None, True, Plan("h264", False, Target(320, 240, 30.0))),
        (H264_VGA, Wanted(fps=10.0), None, True, Plan("h264", False, Target(640, 480, 10.0))),
        (
            Native("mjpeg"),
            Wanted(fps=5.0),
            None,
            True,
            Plan("mjpeg", False, Target(None, None, 5.0)),
        ),
        # a size asked of a source that does not state its own counts as a change
        (Native("h264"), Wanted(640, 480), None, True, Plan("h264", False, Target(640, 480, None))),
        # another codec than the source's, or pass-through off
        (H264_VGA, NONE, "mjpeg", True, Plan("mjpeg", False, Target(640, 480, 30.0))),
        (
            Native("mjpeg", 320, 240, 15.0),
            NONE,
            "h264",
            True,
            Plan("h264", False, Target(320, 240, 15.0)),
        ),
        (H264_VGA, NONE, None, False, Plan("h264", False, Target(640, 480, 30.0))),
        # raw sources always encode, at 640x480, 30 fps unless asked otherwise
        (Native("raw"), NONE, None, True, Plan("h264", False, Target(640, 480, 30.0))),
        (
            Native("raw"),
            Wanted(320, 240, 5.0),
            "mjpeg",
            True,
            Plan("mjpeg", False, Target(320, 240, 5.0)),
        ),
        # a codec RTSP does not serve here (a VP9 file): decoded and encoded at its own size
        (
            Native("other", 800, 600, 25.0),
            NONE,
            None,
            True,
            Plan("h264", False, Target(800, 600, 25.0)),
        ),
    ],
)
def test_plan(
    native: Native, wanted: Wanted, codec: str | None, passthrough: bool, expected: Plan
) -> None:
    assert plan(native, wanted, codec, passthrough=passthrough) == expected  # type: ignore[arg-type]


def test_native_of_sources_that_are_not_probed() -> None:
    assert native_of_source("http") == Native("mjpeg")
    assert native_of_source("rtsp") == Native("h264")
    assert native_of_source("testsrc") == Native("raw")
    assert native_of_source("pipeline") == Native("raw")
    assert native_of_source("file") is None and native_of_source("v4l2") is None


def test_native_from_caps() -> None:
    caps = (
        "video/x-h264, stream-format=(string)avc, alignment=(string)au, level=(string)3, "
        "profile=(string)high, codec_data=(buffer)01640016ffe1, width=(int)320, "
        "height=(int)240, framerate=(fraction)30000/1001, pixel-aspect-ratio=(fraction)1/1"
    )
    native = native_from_caps(caps)
    assert (native.format, native.width, native.height) == ("h264", 320, 240)
    assert native.fps == pytest.approx(29.97, abs=0.001)
    # multipartdemux/jpegparse: no rate stated (0/1), measured later
    assert native_from_caps(
        "image/jpeg, width=(int)1280, height=(int)720, framerate=(fraction)0/1"
    ) == Native("mjpeg", 1280, 720, None)
    assert native_from_caps("video/x-vp9, width=(int)64, height=(int)48").format == "other"


# a UVC webcam's caps as v4l2src reports them (lists, a range, raw in YUY2)
WEBCAM = (
    "image/jpeg, width=(int)1280, height=(int)720, pixel-aspect-ratio=(fraction)1/1, "
    "framerate=(fraction){ 30/1, 15/1 }; "
    "image/jpeg, width=(int)640, height=(int)480, pixel-aspect-ratio=(fraction)1/1, "
    "framerate=(fraction){ 30/1, 15/1, 5/1 }; "
    "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au, width=(int)1920, "
    "height=(int)1080, framerate=(fraction)30/1; "
    "video/x-raw, format=(string)YUY2, width=(int)640, height=(int)480, "
    "framerate=(fraction)[ 5/1, 30/1 ]; "
    "video/x-raw, format=(string)YUY2, width=(int)320, height=(int)240, "
    "framerate=(fraction)30/1; "
    "video/x-raw(memory:DMABuf), format=(string)YUY2, width=(int)320, height=(int)240; "
    "video/x-raw, format=(string)NV12, width=(int)[ 16, 4096 ], height=(int)[ 16, 4096 ]"
)


def test_modes_from_caps() -> None:
    modes = modes_from_caps(WEBCAM)
    assert modes == [
        Mode("mjpeg", 1280, 720, (30.0, 15.0)),
        Mode("mjpeg", 640, 480, (30.0, 15.0, 5.0)),
        Mode("h264", 1920, 1080, (30.0,)),
        Mode("raw", 640, 480, (30.0, 25.0, 24.0, 20.0, 15.0, 10.0, 7.5, 5.0)),
        Mode("raw", 320, 240, (30.0,)),
    ]


@pytest.mark.parametrize(
    ("wanted", "fmt", "codec", "mode", "rate"),
    [
        # nothing asked: 640x480 at 30 as it comes (MJPEG first)
        (NONE, "auto", None, ("mjpeg", 640, 480), 30.0),
        # --codec h264: the H.264 mode, served as it comes at its own size
        (NONE, "auto", "h264", ("h264", 1920, 1080), 30.0),
        (NONE, "h264", None, ("h264", 1920, 1080), 30.0),
        (NONE, "raw", None, ("raw", 640, 480), 30.0),
        # a size it has: that size, as it comes
        (Wanted(1280, 720), "auto", None, ("mjpeg", 1280, 720), 30.0),
        (Wanted(1280, 720, 15.0), "auto", None, ("mjpeg", 1280, 720), 15.0),
        # a rate it does not have: the fastest below it (then converted)
        (Wanted(1280, 720, 20.0), "auto", None, ("mjpeg", 1280, 720), 15.0),
        # a size it does not have: the closest larger mode (scaled down)
        (Wanted(960, 540), "auto", None, ("mjpeg", 1280, 720), 30.0),
        (Wanted(320, 240), "auto", None, ("raw", 320, 240), 30.0),
        (Wanted(320, 240), "mjpeg", None, ("mjpeg", 640, 480), 30.0),
    ],
)
def test_choose_v4l2_mode(
    wanted: Wanted, fmt: str, codec: str | None, mode: tuple[str, int, int], rate: float
) -> None:
    chosen, fps = choose_v4l2_mode(modes_from_caps(WEBCAM), wanted, fmt, codec)  # type: ignore[arg-type]
    assert ((chosen.format, chosen.width, chosen.height), fps) == (mode, rate)


def test_webcam_mode_is_served_as_it_comes() -> None:
    modes = modes_from_caps(WEBCAM)
    mode, fps = choose_v4l2_mode(modes, NONE, "auto", None)
    assert mode_caps(mode, fps) == "image/jpeg,width=640,height=480,framerate=30/1"
    native = Native(mode.format, mode.width, mode.height, fps)
    assert plan(native, NONE, None) == Plan("mjpeg", True)
    # a raw-only webcam encodes; one that offers nothing usable is refused with what it offers
    raw_only = [m for m in modes if m.format == "raw"]
    mode, fps = choose_v4l2_mode(raw_only, NONE, "auto", None)
    assert plan(Native(mode.format, mode.width, mode.height, fps), NONE, None).passthrough is False
    with pytest.raises(ValueError, match="offers raw; --v4l2-format mjpeg needs mjpeg"):
        choose_v4l2_mode(raw_only, NONE, "mjpeg", None)
    with pytest.raises(ValueError, match="offers nothing"):
        choose_v4l2_mode([], NONE, "auto", None)
    assert DEFAULT.width == 640


def test_passthrough_descriptions(tmp_path: Path) -> None:
    clip = tmp_path / 'a "clip".mp4'
    clip.write_bytes(b"x")
    h264_tail = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
    assert passthrough_description(Source("file", str(clip)), "h264") == (
        f'filesrc location="{tmp_path}/a \\"clip\\".mp4" ! parsebin ! {h264_tail}'
    )
    rtsp = passthrough_description(Source("rtsp", "rtsp://h/x"), "h264")
    assert "add-reference-timestamp-meta=true name=upstream ! rtph264depay ! h264parse" in rtsp
    http = passthrough_description(Source("http", "http://h/v.mjpg"), "mjpeg")
    assert http.endswith("multipartdemux single-stream=true ! jpegparse ! image/jpeg")
    device = tmp_path / "video0"
    device.touch()
    cam = passthrough_description(Source("v4l2", str(device)), "mjpeg", "image/jpeg,width=640")
    assert (
        cam
        == f'v4l2src device="{device}" ! capsfilter caps="image/jpeg,width=640" ! jpegparse ! image/jpeg'
    )
    for nothing in (Source("testsrc", "testsrc"), Source("rtsp", "rtsp://h/x")):
        with pytest.raises(ValueError, match="without encoding"):
            passthrough_description(nothing, "mjpeg")
