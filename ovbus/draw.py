"""Drawing results on frames: boxes and ``label score`` per object, a colour per label, as JPEG.
Used by the infer worker's snapshots and by the notebooks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError
from ovbus.payloads.detections import DetectedObject

_COLOURS = [(0, 255, 0), (0, 165, 255), (255, 128, 0), (255, 0, 255), (0, 255, 255)]


def annotate(
    image: npt.NDArray[np.uint8],
    objects: list[DetectedObject],
    *,
    scale: tuple[float, float] = (1.0, 1.0),
    quality: int = 80,
) -> bytes:
    """JPEG bytes of ``image`` with each object's box (multiplied by ``scale`` x, y) drawn."""
    import cv2

    canvas = image.copy()
    labels: dict[str, int] = {}
    sx, sy = scale
    for obj in objects:
        colour = _COLOURS[labels.setdefault(obj.label, len(labels)) % len(_COLOURS)]
        x1, y1, x2, y2 = (round(v * s) for v, s in zip(obj.box, (sx, sy, sx, sy), strict=True))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(
            canvas,
            f"{obj.label} {obj.score:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OvbusError("JPEG encoding failed")
    return bytes(data)
