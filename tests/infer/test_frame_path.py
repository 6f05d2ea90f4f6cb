"""The infer worker's frame path without copies (issue 25): a decoded buffer is read through a
view of its mapped memory (``ovbus.mapped``) and scaled or copied out of it in one pass
(``ovbus.frames.i420``), giving exactly the frame the copying path gave."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from ovbus import mapped
from ovbus.frames import Frame, area_shrink, i420, shrink_i420
from ovbus.rtsp import Pending, RtspReader
from ovbus.rtsp_pipeline import init, video_info
from tests.stack import make_video


def _reference(data: bytes, width: int, height: int, offsets: list[int], strides: list[int],
               factor: int) -> np.ndarray:  # fmt: skip
    """The frame as the reader made it before: a copy of each plane, then area scaling."""
    w, h = width - width % 2, height - height % 2
    raw = np.frombuffer(data, np.uint8)
    planes = []
    for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
        rows = height if i == 0 else (height + 1) // 2
        plane = raw[offsets[i] : offsets[i] + strides[i] * rows].reshape(rows, strides[i])
        planes.append(np.ascontiguousarray(plane[:ph, :pw]))
    if factor == 1:
        return np.concatenate([p.reshape(-1) for p in planes]).reshape(h * 3 // 2, w)
    nw, nh = (w // factor) & ~1, (h // factor) & ~1
    sizes = [(nw, nh), (nw // 2, nh // 2), (nw // 2, nh // 2)]
    out = [
        cv2.resize(p, s, interpolation=cv2.INTER_AREA).reshape(-1)
        for p, s in zip(planes, sizes, strict=True)
    ]
    return np.concatenate(out).reshape(nh * 3 // 2, nw)


@pytest.mark.parametrize(
    ("size", "factor"),
    [
        (size, factor)
        for size in [(641, 361), (640, 360), (642, 362), (7, 5)]
        for factor in [1, 2, 4]
        if size[0] // factor >= 2 and size[1] // factor >= 2  # at least one I420 block
    ],
)
def test_planes_scaled_in_one_pass_are_the_copied_then_scaled_frame(
    size: tuple[int, int], factor: int
) -> None:
    width, height = size
    strides = [width + 6, (width + 1) // 2 + 3, (width + 1) // 2 + 3]
    rows_uv = (height + 1) // 2
    offsets = [0, strides[0] * height, strides[0] * height + strides[1] * rows_uv]
    rng = np.random.default_rng(width * 10 + factor)
    buf = rng.integers(0, 256, offsets[2] + strides[2] * rows_uv, dtype=np.uint8)
    expected = _reference(buf.tobytes(), width, height, offsets, strides, factor)
    got = i420(buf, width, height, offsets, strides, factor)
    assert got.flags.c_contiguous and got.shape == expected.shape
    if factor <= 2:
        assert np.array_equal(got, expected)
    else:  # scaled in halvings (ovbus.frames.area_shrink) where exact: rounded once more
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # and the shrink of an already contiguous frame is the same scaling
    full = i420(buf, width, height, offsets, strides)
    assert np.array_equal(shrink_i420(full, factor), got)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_a_plane_scaled_by_a_power_of_two_is_the_average_of_its_blocks(factor: int) -> None:
    """Each pixel of a plane scaled down by ``factor`` is the mean of the ``factor`` x
    ``factor`` block it stands for, to within the rounding of its halvings (half a level each;
    what a camera's frame for a small model, or a 1080p frame for the default model, is scaled
    by: 4 or 8)."""
    rng = np.random.default_rng(factor)
    plane = rng.integers(0, 256, (360, 640), dtype=np.uint8)
    out = np.empty((360 // factor, 640 // factor), np.uint8)
    area_shrink(plane, out)
    blocks = plane.reshape(360 // factor, factor, 640 // factor, factor).astype(float)
    halvings = factor.bit_length() - 1
    assert np.abs(out - blocks.mean(axis=(1, 3))).max() <= 0.5 * halvings + 1e-9


def test_a_mapped_view_reads_the_buffer_and_cannot_write_it() -> None:
    gst = init()
    assert mapped.available(gst)  # this machine reads frames without the copy
    assert mapped._check(gst)[1] == ""  # the pointer is the one PyGObject shows, and maps
    data = bytes(range(256)) * 40
    buffer = gst.Buffer.new_wrapped(data)
    with mapped.mapped(buffer) as view:
        assert view is not None and view.tobytes() == data
        with pytest.raises(ValueError):
            view[0] = 1
    ok, info = buffer.map(gst.MapFlags.READ)  # unmapped by the block: maps again
    assert ok
    buffer.unmap(info)


def _samples(count: int, width: int = 640, height: int = 480) -> list[Any]:
    gst = init()
    video = make_video(seconds=1, width=width, height=height, fps=30)
    pipeline = gst.parse_launch(  # a test's own file pipeline: no bus data in it
        f"filesrc location={video} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! "
        "video/x-raw,format=I420 ! appsink name=sink max-buffers=64 sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(gst.State.PLAYING)
    try:
        samples: list[Any] = []
        while len(samples) < count:
            sample = sink.emit("try-pull-sample", 60 * gst.SECOND)
            assert sample is not None, "the decoder gave no frame"
            samples.append(sample)
        return samples
    finally:
        pipeline.set_state(gst.State.NULL)


@pytest.mark.parametrize("decode_size", [None, (192, 192), (128, 128)])
def test_reader_frames_are_the_decoded_frames_with_or_without_the_view(
    decode_size: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gst = init()
    reader = RtspReader("rtsp://127.0.0.1:9/none", camera="c", decode_size=decode_size)
    for index, sample in enumerate(_samples(3)):
        buffer, video = sample.get_buffer(), video_info(sample.get_caps())
        ok, info = buffer.map(gst.MapFlags.READ)
        assert ok
        data = bytes(info.data)
        buffer.unmap(info)
        factor = {None: 1, (192, 192): 2, (128, 128): 2}[decode_size]  # 640x480: 240 rows/4
        expected = _reference(data, video.width, video.height, list(video.offset[:3]),
                              list(video.stride[:3]), factor)  # fmt: skip
        fast = Pending(reader, sample, 1.0, index).frame()
        with monkeypatch.context() as m:
            m.setattr(mapped, "_lib", None)  # where the view cannot be had: mapped with a copy
            slow = Pending(reader, sample, 1.0, index).frame()
        assert fast is not None and slow is not None
        assert np.array_equal(fast.yuv, expected) and np.array_equal(slow.yuv, expected)
        assert (fast.width, fast.height) == (640 // factor, 480 // factor)


def test_a_readers_caps_are_read_once_per_caps_and_again_when_they_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caps of a stream's samples are one object until it is renegotiated: the reader reads
    them once, and reads new caps (a new size) at once, never sizing a frame by old ones."""
    import ovbus.samples

    read: list[int] = []

    def counted(caps: Any) -> Any:
        info = video_info(caps)
        read.append(info.width)
        return info

    monkeypatch.setattr(ovbus.samples, "video_info", counted)
    reader = RtspReader("rtsp://127.0.0.1:9/none", camera="c")
    large, small = _samples(3), _samples(2, width=320, height=240)
    for index, sample in enumerate([*large[:2], *small, large[2]]):
        frame = Pending(reader, sample, 1.0, index).frame()
        assert frame is not None
        expected = video_info(sample.get_caps())
        assert (frame.width, frame.height) == (expected.width, expected.height)
    assert read == [640, 320, 640]  # each change of caps read once, nothing read twice


def test_the_worker_runs_opencv_in_its_own_threads_only() -> None:
    """OpenCV's thread pool spun beside the job threads: the infer worker turns it off."""
    import cv2

    from services.infer.worker import load_runtimes

    before = cv2.getNumThreads()
    try:
        load_runtimes()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_a_frame_is_converted_only_to_the_form_asked_for() -> None:
    """A JPEG's frame (BGR) makes its I420 only when asked, and a decoded H.264 frame (I420)
    its BGR: each once, each the other's OpenCV conversion, the size known without either."""
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (361, 641, 3), dtype=np.uint8)  # odd: cut to 640x360
    jpeg_frame = Frame.from_bgr(bgr, 1, 10.0, "arrival", 10.5)
    assert (jpeg_frame.width, jpeg_frame.height) == (640, 360)
    assert jpeg_frame.as_held()[0] == "bgr" and jpeg_frame._yuv is None
    yuv = jpeg_frame.yuv
    assert np.array_equal(yuv, cv2.cvtColor(np.ascontiguousarray(bgr[:360, :640]),
                                            cv2.COLOR_BGR2YUV_I420))  # fmt: skip
    assert jpeg_frame.yuv is yuv  # once
    assert jpeg_frame.planes is None  # a JPEG's frame: models run on its BGR, converted or not
    h264_frame = Frame(yuv, 2, 11.0, "rtcp-ntp", 11.2)
    assert h264_frame.as_held()[0] == "i420" and (h264_frame.width, h264_frame.height) == (640, 360)
    image = h264_frame.image
    assert np.array_equal(image, cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420))
    assert h264_frame.image is image and h264_frame.as_held()[0] == "bgr"
    assert h264_frame.planes is yuv  # models still run on its planes once it is in BGR too
    assert "640x360" in repr(h264_frame)


def test_a_region_converts_only_its_planes_and_matches_the_converted_frame() -> None:
    """An object's snapshot region of a frame still in I420 is converted on its own, edges
    odd or even, clipped to the frame, and is exactly what converting the whole frame gives
    there; the frame itself stays unconverted."""
    rng = np.random.default_rng(11)
    yuv = rng.integers(0, 256, (360 * 3 // 2, 640), dtype=np.uint8)
    whole = np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)
    boxes = [(0, 0, 640, 360), (1, 1, 2, 2), (3, 5, 38, 41), (600, 300, 700, 400), (-5, -9, 7, 3)]
    for _ in range(200):  # random, odd and even edges
        xs, ys = sorted(rng.integers(0, 640, 2).tolist()), sorted(rng.integers(0, 360, 2).tolist())
        boxes.append((xs[0], ys[0], xs[1] + 1, ys[1] + 1))
    frame = Frame(yuv, 1, 10.0, "rtcp-ntp", 10.1)
    for x1, y1, x2, y2 in boxes:
        got = frame.region(x1, y1, x2, y2)
        want = whole[max(0, y1) : min(360, y2), max(0, x1) : min(640, x2)]
        assert got.shape == want.shape and np.array_equal(got, want), (x1, y1, x2, y2)
    assert frame.as_held()[0] == "i420"  # never converted whole
    assert frame.region(10, 10, 10, 20).shape == (10, 0, 3)  # empty: nothing to convert
    bgr_frame = Frame.from_bgr(whole, 2, 11.0, "arrival", 11.1)
    assert np.array_equal(bgr_frame.region(3, 5, 38, 41), whole[5:41, 3:38])
