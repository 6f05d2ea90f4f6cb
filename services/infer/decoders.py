"""Output decoders, plain numpy, chosen by ``ModelDescription.kind``; independent of the backend.

Every decoder takes the model's outputs (name -> array), the :class:`Meta` of the frame and the
score threshold, and returns :class:`Decoded` objects in frame pixels. Outputs that do not match
the description raise ``ModelError`` with ``MODEL_OUTPUT_MISMATCH``: never an empty result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.model import ModelDescription, OptionValue
from services.infer.anchors import ssd_anchors
from services.infer.preprocess import Meta

F32 = npt.NDArray[np.float32]
Outputs = Mapping[str, npt.NDArray[np.generic]]


@dataclass(frozen=True, slots=True)
class Found:
    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(slots=True)
class Decoded:
    objects: list[Found] = field(default_factory=list)
    classes: list[tuple[str, float]] = field(default_factory=list)


def mismatch(message: str) -> ModelError:
    return ModelError(message, code=ErrorCode.MODEL_OUTPUT_MISMATCH)


def _opt_float(options: Mapping[str, OptionValue], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise mismatch(f"option {key!r} must be a number, got {value!r}")
    return float(value)


def _opt_str(options: Mapping[str, OptionValue], key: str, default: str | None) -> str | None:
    value = options.get(key, default)
    if value is not None and not isinstance(value, str):
        raise mismatch(f"option {key!r} must be a string, got {value!r}")
    return value


def _output(outputs: Outputs, name: str | None, what: str) -> F32:
    if name is None:
        if len(outputs) != 1:
            raise mismatch(f"{what}: the model has outputs {sorted(outputs)}; name one in options")
        return np.asarray(next(iter(outputs.values())), dtype=np.float32)
    # "a|b": the first of these names the model has (converters name some outputs differently)
    found = next((n for n in name.split("|") if n in outputs), None)
    if found is None:
        raise mismatch(f"{what}: output {name!r} not among the model's outputs {sorted(outputs)}")
    return np.asarray(outputs[found], dtype=np.float32)


def _label(labels: list[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else str(index)


def iou_matrix(box: F32, boxes: F32) -> F32:
    """IoU of one ``[x1,y1,x2,y2]`` box against many."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def _ious(boxes: F32) -> F32:
    """IoU of every box against every box: row ``i`` is ``iou_matrix(boxes[i], boxes)``, the
    same float32 arithmetic element for element, in one vectorised pass."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[:, None] + areas[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


#: Candidates up to which :func:`nms` runs in plain Python: a face or a person gives a handful,
#: and numpy's per-call cost is most of the time there (6 candidates: 35 us against 61).
SMALL: Final = 10


def _nms_small(boxes: F32, scores: F32, iou: float, weighted: bool) -> tuple[F32, F32]:
    """:func:`nms` in plain Python (float64 arithmetic), for a few candidates."""
    b, s = boxes.tolist(), scores.tolist()
    order = sorted(range(len(s)), key=lambda i: -s[i])  # stable, as argsort(kind="stable")
    b, s = [b[i] for i in order], [s[i] for i in order]
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b]
    alive = [True] * len(b)
    kept_boxes: list[list[float]] = []
    kept_scores: list[float] = []
    for i, (ax1, ay1, ax2, ay2) in enumerate(b):
        if not alive[i]:
            continue
        members = []
        for j in range(i, len(b)):
            if not alive[j]:
                continue
            bx1, by1, bx2, by2 = b[j]
            inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(
                min(ay2, by2) - max(ay1, by1), 0.0
            )
            union = areas[i] + areas[j] - inter
            if j == i or (union > 0 and inter / max(union, 1e-9) > iou):
                members.append(j)
                alive[j] = False
        w = sum(s[j] for j in members)
        if weighted and w > 0:
            kept_boxes.append([sum(b[j][k] * s[j] for j in members) / w for k in range(4)])
        else:
            kept_boxes.append(b[i])
        kept_scores.append(s[i])
    return np.asarray(kept_boxes, np.float32).reshape(-1, 4), np.asarray(kept_scores, np.float32)


def nms(boxes: F32, scores: F32, iou: float, weighted: bool = False) -> tuple[F32, F32]:
    """Greedy non-maximum suppression; ``weighted`` averages each cluster's boxes by score
    (MediaPipe's WEIGHTED overlap). Returns the kept boxes and scores, best first. Up to
    :data:`SMALL` candidates in plain Python, more vectorised (the same boxes kept)."""
    if len(boxes) <= SMALL:
        return _nms_small(boxes, scores, iou, weighted)
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    kept_boxes: list[F32] = []
    kept_scores: list[float] = []
    alive = np.ones(len(boxes), dtype=bool)
    over = _ious(boxes) > iou  # every pair at once, each row as iou_matrix gives it
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        cluster = over[i] & alive
        cluster[i] = True
        if weighted:
            w = scores[cluster]
            kept_boxes.append((boxes[cluster] * w[:, None]).sum(axis=0) / w.sum())
        else:
            kept_boxes.append(boxes[i])
        kept_scores.append(float(scores[i]))
        alive &= ~cluster
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return np.stack(kept_boxes).astype(np.float32), np.asarray(kept_scores, np.float32)


#: A box lying this much inside a better one from another tile is the part of that object a tile
#: edge cut off (or the same object boxed a little differently at another scale).
INSIDE: Final = 0.6


def merge_tiles(parts: list[tuple[tuple[int, int], list[Found]]], iou: float) -> list[Found]:
    """Objects found in tiles, each tile's boxes shifted by its ``(x, y)`` offset into frame
    pixels, merged per label by greedy NMS across tiles: a box is dropped when a better-scoring
    box of its label *from another tile* overlaps it by more than ``iou`` (IoU) or holds at least
    ``INSIDE`` of its area. Boxes of one tile were already told apart by the model's decoder."""
    shifted = [
        (t, Found(f.label, f.score, (f.box[0] + dx, f.box[1] + dy, f.box[2] + dx, f.box[3] + dy)))
        for t, ((dx, dy), found) in enumerate(parts)
        for f in found
    ]
    out: list[Found] = []
    for label in sorted({f.label for _, f in shifted}):
        group = sorted((p for p in shifted if p[1].label == label), key=lambda p: -p[1].score)
        tile = np.array([t for t, _ in group])
        boxes = np.array([f.box for _, f in group], np.float32)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        alive = np.ones(len(group), dtype=bool)
        for i, (t, f) in enumerate(group):
            if not alive[i]:
                continue
            out.append(f)
            x1 = np.maximum(boxes[i, 0], boxes[:, 0])
            y1 = np.maximum(boxes[i, 1], boxes[:, 1])
            x2 = np.minimum(boxes[i, 2], boxes[:, 2])
            y2 = np.minimum(boxes[i, 3], boxes[:, 3])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            smaller = np.maximum(np.minimum(areas[i], areas), 1e-9)
            same = (iou_matrix(boxes[i], boxes) > iou) | (inter / smaller >= INSIDE)
            alive &= ~(same & (tile != t))
    out.sort(key=lambda f: -f.score)
    return out


def _found(labels: list[str], ids: list[int], boxes: F32, scores: F32, meta: Meta) -> list[Found]:
    pixels = meta.to_frame(boxes) if len(boxes) else np.zeros((0, 4), np.int64)
    out = []
    # as Python numbers in one call each (int()/float() per element cost more than the rest)
    for i, (x1, y1, x2, y2), score in zip(ids, pixels.tolist(), scores.tolist(), strict=True):
        if x2 > x1 and y2 > y1:
            out.append(Found(_label(labels, i), round(score, 4), (x1, y1, x2, y2)))
    return out


def decode_detection_out(
    desc: ModelDescription, outputs: Outputs, meta: Meta, thr: float
) -> Decoded:
    """SSD ``DetectionOutput`` [1,1,N,7]: image_id, label, conf, x1, y1, x2, y2 (normalised)."""
    raw = _output(outputs, _opt_str(desc.options, "output", None), "detection_out")
    if raw.ndim < 2 or raw.shape[-1] != 7:
        raise mismatch(f"detection_out expects [..., N, 7], got shape {list(raw.shape)}")
    rows = raw.reshape(-1, 7)
    rows = rows[(rows[:, 0] >= 0) & (rows[:, 2] >= thr)]
    offset = int(_opt_float(desc.options, "label_offset", 0))
    boxes = rows[:, 3:7] * np.array([meta.input_w, meta.input_h] * 2, np.float32)
    ids = [int(v) - offset for v in rows[:, 1]]
    return Decoded(_found(desc.labels, ids, boxes, rows[:, 2], meta))


def _candidates(logits: F32, thr: float) -> npt.NDArray[np.bool_]:
    """The anchors whose sigmoid score may reach ``thr``: their logit is at least ``thr``'s,
    less a margin for rounding (the exact test on the scores follows)."""
    if not 0.0 < thr < 1.0:
        return np.ones(logits.shape, dtype=bool)
    return np.asarray(logits >= math.log(thr / (1.0 - thr)) - 1e-3, dtype=bool)


def decode_blazeface(desc: ModelDescription, outputs: Outputs, meta: Meta, thr: float) -> Decoded:
    """MediaPipe single-shot detector (BlazeFace, pose detector): SSD anchors from the options,
    regressors ``[x_center, y_center, w, h, keypoints...]`` relative to the anchor and scaled by
    ``coord_scale``, sigmoid scores clipped at ``score_clip``, weighted (default) or plain NMS."""
    opts = desc.options
    regress = _output(outputs, _opt_str(opts, "boxes_output", None), "blazeface boxes")
    logits = _output(outputs, _opt_str(opts, "scores_output", None), "blazeface scores")
    anchors = ssd_anchors(opts)
    n = anchors.shape[0]
    regress = regress.reshape(-1, regress.shape[-1]) if regress.ndim >= 2 else regress
    logits = logits.reshape(-1)
    if regress.ndim != 2 or regress.shape[0] != n or regress.shape[1] < 4 or logits.shape[0] != n:
        raise mismatch(
            f"blazeface options give {n} anchors, the outputs have boxes {list(regress.shape)} "
            f"and scores {list(logits.shape)}"
        )
    clip = _opt_float(opts, "score_clip", 100.0)
    # the sigmoid of the few anchors that can pass, not of every anchor (by index, in order)
    keep = np.flatnonzero(_candidates(logits, thr))
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep].astype(np.float64), -clip, clip)))
    passed = scores >= thr
    keep, scores = keep[passed], scores[passed]
    if not len(keep):
        return Decoded()
    coord = _opt_float(opts, "coord_scale", float(opts.get("input_size", meta.input_w)))  # type: ignore[arg-type]
    r, a, s = regress[keep], anchors[keep], scores.astype(np.float32)
    cx = r[:, 0] / coord * a[:, 2] + a[:, 0]
    cy = r[:, 1] / coord * a[:, 3] + a[:, 1]
    w = r[:, 2] / coord * a[:, 2]
    h = r[:, 3] / coord * a[:, 3]
    norm = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    weighted = _opt_str(opts, "nms", "weighted") == "weighted"
    boxes, scores_kept = nms(norm, s, _opt_float(opts, "iou", 0.3), weighted=weighted)
    boxes = boxes * np.array([meta.input_w, meta.input_h] * 2, np.float32)
    label = [0] * len(boxes)
    return Decoded(_found(desc.labels or ["object"], label, boxes, scores_kept, meta))


def decode_tf_detection(
    desc: ModelDescription, outputs: Outputs, meta: Meta, thr: float
) -> Decoded:
    """TensorFlow Object Detection API graphs (post-processing inside the model): boxes
    ``[1,N,4]`` as normalised ``y1, x1, y2, x2``, scores ``[1,N]``, class ids ``[1,N]`` (from
    ``label_offset``, default 1) and the count of valid rows ``[1]``; output names in options
    ``boxes_output``, ``scores_output``, ``classes_output``, ``count_output``."""
    opts = desc.options
    boxes = _output(outputs, _opt_str(opts, "boxes_output", "detection_boxes"), "tf boxes")
    scores = _output(outputs, _opt_str(opts, "scores_output", "detection_scores"), "tf scores")
    classes = _output(outputs, _opt_str(opts, "classes_output", "detection_classes"), "tf classes")
    count = _output(outputs, _opt_str(opts, "count_output", "num_detections"), "tf count")
    boxes = boxes.reshape(-1, boxes.shape[-1]) if boxes.ndim >= 2 else boxes
    scores, classes = scores.reshape(-1), classes.reshape(-1)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes) == len(scores) == len(classes):
        raise mismatch(
            f"tf_detection expects boxes [1,N,4], scores and classes [1,N]; got boxes "
            f"{list(boxes.shape)}, scores {list(scores.shape)}, classes {list(classes.shape)}"
        )
    n = int(count.reshape(-1)[0]) if count.size else 0
    if not 0 <= n <= len(boxes):
        raise mismatch(f"tf_detection count {n} is outside 0..{len(boxes)}")
    keep = np.arange(len(boxes)) < n
    keep &= scores >= thr
    y1, x1, y2, x2 = (boxes[keep, i] for i in range(4))
    pixels = np.stack(
        [x1 * meta.input_w, y1 * meta.input_h, x2 * meta.input_w, y2 * meta.input_h], axis=1
    )
    offset = int(_opt_float(opts, "label_offset", 1))
    ids = [round(float(c)) - offset for c in classes[keep]]
    return Decoded(_found(desc.labels, ids, pixels.astype(np.float32), scores[keep], meta))


def decode_yolo(desc: ModelDescription, outputs: Outputs, meta: Meta, thr: float) -> Decoded:
    """YOLOv8+ head [1, 4+C, N] (cx, cy, w, h in input pixels, then C class scores), per-class
    NMS (option ``iou``, default 0.45)."""
    raw = _output(outputs, _opt_str(desc.options, "output", None), "yolo")
    if raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[1] < 5:
        raise mismatch(f"yolo expects [1, 4+C, N], got shape {list(raw.shape)}")
    preds = raw[0].T
    if desc.labels and preds.shape[1] - 4 != len(desc.labels):
        raise mismatch(
            f"yolo output has {preds.shape[1] - 4} classes, model.json has {len(desc.labels)} labels"
        )
    cls = preds[:, 4:]
    ids = cls.argmax(axis=1)
    scores = cls[np.arange(len(cls)), ids]
    keep = scores >= thr
    preds, ids, scores = preds[keep], ids[keep], scores[keep]
    xyxy = np.stack(
        [
            preds[:, 0] - preds[:, 2] / 2,
            preds[:, 1] - preds[:, 3] / 2,
            preds[:, 0] + preds[:, 2] / 2,
            preds[:, 1] + preds[:, 3] / 2,
        ],
        axis=1,
    ).astype(np.float32)
    iou = _opt_float(desc.options, "iou", 0.45)
    objects: list[Found] = []
    for c in np.unique(ids):
        sel = ids == c
        boxes, kept = nms(xyxy[sel], scores[sel].astype(np.float32), iou)
        objects += _found(desc.labels, [int(c)] * len(boxes), boxes, kept, meta)
    objects.sort(key=lambda o: -o.score)
    return Decoded(objects)


def decode_classification(
    desc: ModelDescription, outputs: Outputs, meta: Meta, thr: float
) -> Decoded:
    """Class scores [1, C] (option ``softmax``: apply it first); top ``top_k`` (default 5) with
    a score at or above the threshold."""
    raw = _output(outputs, _opt_str(desc.options, "output", None), "classification").reshape(-1)
    if desc.labels and raw.shape[0] != len(desc.labels):
        raise mismatch(
            f"classifier has {raw.shape[0]} scores, model.json has {len(desc.labels)} labels"
        )
    if desc.options.get("softmax", False):
        e = np.exp(raw - raw.max())
        raw = e / e.sum()
    k = int(_opt_float(desc.options, "top_k", 5))
    top = np.argsort(-raw, kind="stable")[:k]
    return Decoded(
        classes=[
            (_label(desc.labels, int(i)), round(float(min(max(raw[i], 0.0), 1.0)), 4))
            for i in top
            if raw[i] >= thr
        ]
    )


DECODERS = {
    "detection_out": decode_detection_out,
    "blazeface": decode_blazeface,
    "yolo": decode_yolo,
    "classification": decode_classification,
    "tf_detection": decode_tf_detection,
}


def decode(desc: ModelDescription, outputs: Outputs, meta: Meta, threshold: float) -> Decoded:
    """Decode ``outputs`` with the decoder ``desc.kind`` names."""
    return DECODERS[desc.kind](desc, outputs, meta, threshold)
