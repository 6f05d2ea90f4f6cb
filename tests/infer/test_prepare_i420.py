"""A decoded frame is pre-processed from its I420 planes (issue 25): each plane scaled to the
frame's size in the model's input, and only those pixels converted to colour. The tensor is the
one the frame in BGR gives (but for chroma at half the input's resolution, as I420 holds it), with the
same mapping back to frame pixels; the camera loop runs a model on a frame without converting
the frame, and finds the same faces as on the frame in BGR."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ovbus.errors import ModelError
from ovbus.frames import Frame
from ovbus.metrics import iou
from ovbus.payloads import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from ovbus.preprocess import prepare, prepare_i420, takes_raw_pixels
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.run import run_model
from tests import assets
from tests.media import read_image
from tests.models import FULL_RANGE

DESCRIPTIONS = [  # layout, colour, mode, pad, input shape
    ("NHWC", "RGB", "letterbox", 0, (1, 192, 192, 3)),  # the default face model
    ("NCHW", "BGR", "stretch", 114, (1, 3, 300, 300)),
    ("NCHW", "RGB", "letterbox", 114, (1, 3, 320, 320)),
    ("NHWC", "BGR", "letterbox", 7, (1, 96, 128, 3)),  # wider than tall
]
SIZES = [(1280, 720), (640, 480), (640, 360), (320, 240)]


def _i420(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    scaled = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(scaled, cv2.COLOR_BGR2YUV_I420), np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return read_image(assets.astronaut())


def _faces() -> np.ndarray:
    """A 1280x720 frame with the astronaut twice, her face about 130 and 105 px."""
    frame = np.full((720, 1280, 3), 40, np.uint8)
    photo = read_image(assets.astronaut())
    for side, (x, y) in ((700, (0, 10)), (560, (700, 120))):
        frame[y : y + side, x : x + side] = cv2.resize(photo, (side, side))
    return frame


@pytest.mark.parametrize(("layout", "color", "mode", "pad", "shape"), DESCRIPTIONS)
@pytest.mark.parametrize("size", SIZES)
def test_the_tensor_from_the_planes_is_the_tensor_from_bgr(
    photo: np.ndarray,
    layout: str,
    color: str,
    mode: str,
    pad: int,
    shape: tuple[int, ...],
    size: tuple[int, int],
) -> None:
    desc = ModelDescription.model_validate(
        {"kind": "detection_out", "labels": ["x"], "layout": layout, "color": color, "resize": mode,
         "mean": [127.5] * 3, "scale": [127.5] * 3, "options": {"pad": pad}}
    )  # fmt: skip
    yuv = _i420(photo, *size)
    prepared = prepare_i420(yuv, desc, shape)
    assert prepared is not None
    tensor, meta = prepared
    bgr = np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), np.uint8)
    expected, expected_meta = prepare(bgr, desc, shape)
    assert meta == expected_meta
    assert tensor.shape == expected.shape and tensor.dtype == np.float32
    diff = np.abs(tensor - expected) * 127.5  # in pixel levels
    # the colour order, the layout, the padding and the placement are exact (each wrong gives a
    # mean of 18 levels or more on this photo); what differs is chroma at half the input's
    # resolution (I420's, scaled before the conversion), at edges of colour only
    assert float(diff.mean()) < 3.0
    assert float(np.percentile(diff, 99)) < 40
    width, height = (shape[2], shape[1]) if layout == "NHWC" else (shape[3], shape[2])
    if mode == "letterbox" and (meta.pad_x or meta.pad_y):
        channels = tensor[0] if layout == "NCHW" else tensor[0].transpose(2, 0, 1)
        border = channels[:, 0, 0] if meta.pad_y or meta.pad_x else None
        assert border is not None and np.allclose(border * 127.5 + 127.5, pad)
    assert (meta.input_w, meta.input_h) == (width, height)


def test_an_odd_scaled_size_is_left_to_the_bgr_path_and_bad_planes_are_refused() -> None:
    desc = ModelDescription.model_validate(
        {"kind": "detection_out", "labels": ["x"], "resize": "letterbox"}
    )
    yuv = np.zeros((720 * 3 // 2, 1280), np.uint8)
    # 1280x720 letterboxed into 101x101: 101x57, which I420 cannot hold
    assert prepare_i420(yuv, desc, (1, 3, 101, 101)) is None
    for bad in (np.zeros((720, 1280, 3), np.uint8), np.zeros((100, 64), np.uint8)):
        with pytest.raises(ModelError, match="I420"):
            prepare_i420(bad, desc, (1, 3, 64, 64))


def test_a_decoded_frame_runs_unconverted_and_finds_the_faces_bgr_finds(
    face_backend: OpenVINOBackend,
) -> None:
    model = face_backend.model("face")
    pm = PipelineModel(name="face", threshold=0.5)
    faces = _faces()
    for size in ((1280, 720), (640, 480)):
        yuv = _i420(faces, *size)
        frame = Frame(yuv, 1, 0.0, "arrival", 0.0)
        from_planes = run_model(model, FULL_RANGE, frame, pm)
        assert frame.as_held()[0] == "i420"  # the model ran without a BGR conversion
        assert frame.image.shape[2] == 3  # converted since (a snapshot, replay): the input stays
        again = run_model(model, FULL_RANGE, frame, pm)
        assert [(o.box, o.score) for o in again.objects] == [
            (o.box, o.score) for o in from_planes.objects
        ]
        bgr = np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), np.uint8)
        from_bgr = run_model(model, FULL_RANGE, bgr, pm)
        assert len(from_bgr.objects) == 2
        assert len(from_planes.objects) == len(from_bgr.objects)
        for a in from_bgr.objects:
            best = max(from_planes.objects, key=lambda b: iou(a.box, b.box))
            assert iou(a.box, best.box) > 0.85 and abs(a.score - best.score) < 0.1


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_a_uint8_input_with_no_normalisation_gets_the_pixels_without_a_float_round_trip(
    photo: np.ndarray, layout: str
) -> None:
    """TensorFlow's detection graphs (the room person model) take uint8 pixels, mean 0 and
    scale 1: they get exactly the pixels the float tensor rounded back would hold, from BGR and
    from the planes alike; a uint8 input with a mean, or a float input, keeps the float path."""
    desc = ModelDescription.model_validate(
        {"kind": "tf_detection", "labels": ["person"], "layout": layout, "color": "RGB",
         "mean": [0, 0, 0], "scale": [1, 1, 1], "resize": "stretch"}
    )  # fmt: skip
    shape = (1, 300, 300, 3) if layout == "NHWC" else (1, 3, 300, 300)
    assert takes_raw_pixels(desc, "uint8") and takes_raw_pixels(desc, "u8")
    assert not takes_raw_pixels(desc, "f32")
    assert not takes_raw_pixels(desc.model_copy(update={"mean": [127.5] * 3}), "uint8")
    yuv = _i420(photo, 640, 360)
    bgr = np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), np.uint8)
    floats, _ = prepare(bgr, desc, shape)
    pixels, _ = prepare(bgr, desc, shape, raw=True)
    assert pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    assert np.array_equal(pixels, np.clip(np.rint(floats), 0, 255).astype(np.uint8))
    from_planes = prepare_i420(yuv, desc, shape, raw=True)
    float_planes = prepare_i420(yuv, desc, shape)
    assert from_planes is not None and float_planes is not None
    assert from_planes[0].dtype == np.uint8
    assert np.array_equal(from_planes[0], float_planes[0].astype(np.uint8))
