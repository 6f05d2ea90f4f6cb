"""Pre-processing and decoders on the real photo through the real OpenVINO runtime."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.model import ModelDescription
from services.infer.anchors import ssd_anchors
from services.infer.decoders import Found, _ious, decode, iou_matrix, nms
from services.infer.preprocess import Meta, prepare, resize
from tests import assets
from tests.media import read_image
from tests.models import ASTRONAUT_FACE, BLAZEFACE, POSE


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    return float(iou_matrix(np.array(a, np.float32), np.array([b], np.float32))[0])


@pytest.fixture(scope="module")
def face_model() -> ov.CompiledModel:
    return ov.Core().compile_model(str(assets.blazeface()), "CPU")


def run(model: ov.CompiledModel, frame: np.ndarray, desc: ModelDescription) -> list[Found]:
    shape = tuple(model.inputs[0].get_shape())
    tensor, meta = prepare(frame, desc, shape)
    result = model(tensor)
    outputs = {port.get_any_name(): result[port] for port in model.outputs}
    return decode(desc, outputs, meta, 0.5).objects


def test_anchor_counts_match_the_mediapipe_models() -> None:
    assert ssd_anchors(BLAZEFACE.options).shape == (896, 4)
    assert ssd_anchors(POSE.options).shape == (2254, 4)
    anchors = ssd_anchors(BLAZEFACE.options)
    # first feature map 16x16, 2 anchors per cell; centres at (x + 0.5) / 16
    assert anchors[0].tolist() == [0.5 / 16, 0.5 / 16, 1.0, 1.0]
    assert anchors[2].tolist() == [1.5 / 16, 0.5 / 16, 1.0, 1.0]
    # second map 8x8 with 6 anchors per cell (three stride-16 layers merged)
    assert anchors[512].tolist() == anchors[517].tolist() == [0.5 / 8, 0.5 / 8, 1.0, 1.0]


def test_blazeface_finds_the_astronaut_face(face_model: ov.CompiledModel) -> None:
    frame = read_image(assets.astronaut())
    found = run(face_model, frame, BLAZEFACE)
    assert len(found) == 1
    assert found[0].label == "face" and found[0].score > 0.8
    assert iou(found[0].box, ASTRONAUT_FACE) >= 0.5


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_boxes_map_back_to_frame_pixels_on_a_wide_canvas(
    face_model: ov.CompiledModel, mode: str
) -> None:
    photo = read_image(assets.astronaut())
    crop = photo[0:320, 80:400]  # head and shoulders; short-range BlazeFace wants big faces
    canvas = np.full((480, 640, 3), 40, np.uint8)
    x0, y0 = 250, 100
    canvas[y0 : y0 + 320, x0 : x0 + 320] = crop
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    truth = (fx1 - 80 + x0, fy1 + y0, fx2 - 80 + x0, fy2 + y0)
    desc = BLAZEFACE.model_copy(update={"resize": mode})
    found = run(face_model, canvas, desc)
    assert found, f"no face found with {mode}"
    assert iou(found[0].box, truth) >= 0.5, (found, truth)


def test_no_face_on_a_flat_frame_is_an_empty_list(face_model: ov.CompiledModel) -> None:
    assert run(face_model, np.full((240, 320, 3), 128, np.uint8), BLAZEFACE) == []


def test_wrong_output_names_are_a_model_output_mismatch(face_model: ov.CompiledModel) -> None:
    desc = BLAZEFACE.model_copy(update={"options": {**BLAZEFACE.options, "boxes_output": "boxes"}})
    with pytest.raises(ModelError) as err:
        run(face_model, np.zeros((64, 64, 3), np.uint8), desc)
    assert err.value.code == ErrorCode.MODEL_OUTPUT_MISMATCH
    assert "'boxes'" in err.value.message and "regressors" in err.value.message


def test_wrong_anchor_options_are_refused(face_model: ov.CompiledModel) -> None:
    desc = BLAZEFACE.model_copy(
        update={
            "options": {
                **POSE.options,
                **{"boxes_output": "regressors", "scores_output": "classificators"},
            }
        }
    )
    with pytest.raises(ModelError, match="2254 anchors"):
        run(face_model, np.zeros((64, 64, 3), np.uint8), desc)


def test_wrong_layout_is_refused() -> None:
    desc = BLAZEFACE.model_copy(update={"layout": "NCHW"})
    with pytest.raises(ModelError, match="not a 3-channel NCHW"):
        prepare(np.zeros((64, 64, 3), np.uint8), desc, (1, 128, 128, 3))


def test_prepare_normalises_colour_and_layout() -> None:
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    desc = ModelDescription(
        kind="yolo", layout="NCHW", color="RGB", mean=[0, 0, 0], scale=[255, 255, 255]
    )
    tensor, meta = prepare(frame, desc, (1, 3, 2, 2))
    assert tensor.shape == (1, 3, 2, 2)
    assert tensor[0, 2].tolist() == [[1.0, 1.0], [1.0, 1.0]]  # blue is the last RGB plane
    assert tensor[0, 0].max() == 0.0
    assert meta == Meta(2, 2, 2, 2, 1.0, 1.0)


def test_letterbox_meta_round_trips() -> None:
    image, meta = resize(np.zeros((100, 200, 3), np.uint8), 64, 64, "letterbox")
    assert image.shape == (64, 64, 3)
    assert meta.scale_x == meta.scale_y == 0.32 and meta.pad_y == 16
    back = meta.to_frame(np.array([[0, 16, 64, 48]], np.float32))
    assert back.tolist() == [[0, 0, 200, 100]]


def test_weighted_nms_merges_a_cluster() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.9, 0.6], np.float32)
    kept, kept_scores = nms(boxes, scores, 0.3, weighted=True)
    assert np.allclose(kept, np.array([[0.5, 0.5, 10.5, 10.5], [50, 50, 60, 60]]), atol=1e-4)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.6])
    plain, _ = nms(boxes, scores, 0.3)
    assert plain[0].tolist() == [0, 0, 10, 10]


def test_nms_in_python_keeps_what_the_vectorised_nms_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few candidates go through plain Python: the same boxes kept, in the same order, with
    the same scores, and weighted boxes within float32 rounding, on random clusters with ties."""
    from services.infer import decoders

    rng = np.random.default_rng(3)
    cases = []
    for trial in range(400):
        n = int(rng.integers(0, decoders.SMALL + 1))
        corner = rng.uniform(0, 1, (n, 2)).astype(np.float32)
        if trial % 2 and n:  # half of them near copies of the others: clusters
            corner[n // 2 :] = corner[: n - n // 2] + rng.normal(0, 0.01, (n - n // 2, 2))
        size = rng.uniform(0.01, 0.3, (n, 2)).astype(np.float32)
        scores = rng.uniform(0.5, 1, n).astype(np.float32)
        if trial % 5 == 0:
            scores[: n // 2] = 0.75  # ties keep the input order
        cases.append((np.hstack([corner, corner + size]).astype(np.float32), scores))
    small = [nms(b, s, 0.3, weighted=w) for b, s in cases for w in (True, False)]
    monkeypatch.setattr(decoders, "SMALL", -1)
    vectorised = [nms(b, s, 0.3, weighted=w) for b, s in cases for w in (True, False)]
    for (boxes, scores), (want_boxes, want_scores) in zip(small, vectorised, strict=True):
        assert boxes.shape == want_boxes.shape and np.array_equal(scores, want_scores)
        assert np.allclose(boxes, want_boxes, rtol=0, atol=1e-6)


def test_nms_pairwise_ious_are_iou_matrix_rows() -> None:
    """nms computes every pair's IoU at once; each row must be what iou_matrix gives for that
    box, bit for bit (zero-area and disjoint boxes included), so the kept boxes are the same."""
    rng = np.random.default_rng(7)
    corner = rng.uniform(0, 200, (60, 2)).astype(np.float32)
    boxes = np.hstack([corner, corner + rng.uniform(0, 50, (60, 2)).astype(np.float32)])
    boxes[::7, 2] = boxes[::7, 0]  # zero width
    pairs = _ious(boxes)
    for i in range(len(boxes)):
        assert np.array_equal(pairs[i], iou_matrix(boxes[i], boxes))


def test_detection_out_decoder() -> None:
    desc = ModelDescription(kind="detection_out", labels=["bg", "face"])
    rows = np.array(
        [[[[0, 1, 0.9, 0.1, 0.2, 0.5, 0.6], [0, 1, 0.3, 0, 0, 1, 1], [-1, 0, 0, 0, 0, 0, 0]]]],
        np.float32,
    )
    meta = Meta(200, 100, 300, 300, 1.5, 3.0)
    out = decode(desc, {"detection_out": rows}, meta, 0.5).objects
    assert out == [Found("face", 0.9, (20, 20, 100, 60))]


def test_yolo_decoder_per_class_nms() -> None:
    desc = ModelDescription(kind="yolo", labels=["a", "b"])
    # columns: cx, cy, w, h, score_a, score_b
    preds = np.array(
        [[50, 50, 20, 20, 0.9, 0.1], [51, 50, 20, 20, 0.8, 0.1], [50, 50, 20, 20, 0.1, 0.7]],
        np.float32,
    ).T[np.newaxis]
    out = decode(desc, {"out": preds}, Meta(100, 100, 100, 100, 1.0, 1.0), 0.5).objects
    assert [(o.label, o.box) for o in out] == [("a", (40, 40, 60, 60)), ("b", (40, 40, 60, 60))]
    with pytest.raises(ModelError, match="3 labels"):
        decode(
            desc.model_copy(update={"labels": ["a", "b", "c"]}),
            {"o": preds},
            Meta(1, 1, 1, 1, 1, 1),
            0.5,
        )


def test_classification_top_k() -> None:
    desc = ModelDescription(
        kind="classification", labels=["cat", "dog", "cow"], options={"top_k": 2}
    )
    out = decode(
        desc, {"prob": np.array([[0.2, 0.7, 0.1]], np.float32)}, Meta(1, 1, 1, 1, 1, 1), 0.15
    )
    assert out.classes == [("dog", 0.7), ("cat", 0.2)]


def test_i420_planes_from_a_padded_buffer_and_bgr_on_demand() -> None:
    """The reader's frame copy: strided planes (row padding as GStreamer lays them out) become a
    contiguous I420 image; the odd last column and row are dropped; BGR only on first use."""
    import cv2

    from ovbus.frames import Frame, i420, ntp_ns_to_unix

    width, height, stride_y, stride_uv = 7, 5, 8, 4
    rows_uv = (height + 1) // 2
    y = np.arange(stride_y * height, dtype=np.uint8).reshape(height, stride_y)
    u = np.full((rows_uv, stride_uv), 90, np.uint8)
    v = np.full((rows_uv, stride_uv), 200, np.uint8)
    data = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).tobytes()
    offsets = [0, y.size, y.size + u.size]
    yuv = i420(data, width, height, offsets, [stride_y, stride_uv, stride_uv])
    assert yuv.shape == (6, 6)  # (h - 1) * 3 / 2 rows of w - 1 columns
    assert (yuv[:4] == y[:4, :6]).all()  # luma without padding or the odd column
    assert (yuv[4:].ravel()[:6] == 90).all() and (yuv[4:].ravel()[6:] == 200).all()

    frame = Frame(yuv, 1, 10.0, "rtcp-ntp", 10.1)
    assert frame._bgr is None and (frame.width, frame.height) == (6, 4)
    expected = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420)
    assert frame.image.shape == (4, 6, 3) and (frame.image == expected).all()
    assert frame.image is frame.image  # converted once
    # NTP era 0 nanoseconds -> Unix seconds (2026-01-01T00:00:00Z)
    assert ntp_ns_to_unix((1_767_225_600 + 2_208_988_800) * 10**9) == 1_767_225_600


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.75, 0.999, 1.0])
def test_blazeface_scores_at_the_threshold_are_kept_exactly_as_their_sigmoid_says(
    thr: float,
) -> None:
    """The decoder takes the sigmoid only of the anchors whose logit can pass: an anchor just at,
    above or below the threshold is kept exactly when its score (the sigmoid) reaches it."""
    anchors = ssd_anchors(BLAZEFACE.options)
    n = anchors.shape[0]
    rng = np.random.default_rng(int(thr * 1000))
    edge = np.log(thr / (1 - thr)) if thr < 1 else 40.0
    logits = np.full(n, -30.0, np.float32)
    _, first = np.unique(anchors[:, :2], axis=0, return_index=True)  # one anchor a centre
    spots = rng.choice(first, 60, replace=False)  # tiny boxes at distinct centres: all kept
    near = np.float32(edge) + np.array([0, 1, -1, 2, -2, 1e-4, -1e-4, 5e-4] * 8, np.float32)[:60]
    logits[spots] = np.nextafter(near, near + np.sign(np.arange(60) % 3 - 1), dtype=np.float32)
    regress = np.zeros((n, 16), np.float32)
    regress[:, 2:4] = 2.0  # 2 px boxes on the 128 px input: none overlaps another
    outputs = {"regressors": regress[None], "classificators": logits.reshape(1, n, 1)}
    out = decode(BLAZEFACE, outputs, Meta(128, 128, 128, 128, 1.0, 1.0), thr)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
    expected = sorted(round(float(s), 4) for s in scores if s >= thr)
    assert sorted(f.score for f in out.objects) == expected
