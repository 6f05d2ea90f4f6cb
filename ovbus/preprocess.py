"""Pre-processing from a model's description: resize (stretch or letterbox), colour order,
``(pixel - mean) / scale``, layout. Plain numpy + OpenCV, independent of the backend.

:class:`Meta` travels to the decoders so that boxes found in the model's input space are mapped
back to frame pixels (as OpenVINO Model API does). Shared by the infer worker's runs and the
zoo's INT8 calibration (:mod:`services.zoo.quantize`); OpenCV is imported when a frame is
resized (the library imports without it). A decoded video frame is pre-processed from its I420
planes (:func:`prepare_i420`): only the pixels the model gets are converted to colour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ovbus.errors import ModelError
from ovbus.frames import plane_views
from ovbus.payloads.model import ModelDescription

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.float32]
#: What a model takes: ``(pixel - mean) / scale`` in float32, or the pixels themselves in
#: uint8 (``raw``: a uint8 input with mean 0 and scale 1, such as TensorFlow's detection graphs).
Input = npt.NDArray[np.float32] | npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Meta:
    """How a frame was mapped into the model input: ``input = frame * scale + pad``."""

    frame_w: int
    frame_h: int
    input_w: int
    input_h: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_frame(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Boxes ``[x1,y1,x2,y2]`` in model-input pixels -> integer frame pixels, clipped."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0] = (boxes[:, 0] - self.pad_x) / self.scale_x
        out[:, 2] = (boxes[:, 2] - self.pad_x) / self.scale_x
        out[:, 1] = (boxes[:, 1] - self.pad_y) / self.scale_y
        out[:, 3] = (boxes[:, 3] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, self.frame_w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, self.frame_h)
        return np.rint(out).astype(np.int64)


def input_size(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    """``(width, height)`` of an image input of ``shape`` in ``layout`` (NCHW or NHWC)."""
    if len(shape) != 4:
        raise ModelError(f"image input must have 4 dimensions, the model has shape {list(shape)}")
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    channels = shape[1] if layout == "NCHW" else shape[3]
    if channels != 3 or h <= 0 or w <= 0:
        raise ModelError(
            f"input shape {list(shape)} is not a 3-channel {layout} image (wrong layout in "
            "model.json?)"
        )
    return int(w), int(h)


def placement(fw: int, fh: int, width: int, height: int, mode: str) -> tuple[int, int, Meta]:
    """Where a ``fw`` x ``fh`` frame goes in a ``width`` x ``height`` input: the scaled size
    (``nw``, ``nh``) and the mapping, stretched or letterboxed (centred)."""
    if mode == "stretch":
        return width, height, Meta(fw, fh, width, height, width / fw, height / fh)
    scale = min(width / fw, height / fh)
    nw, nh = max(1, round(fw * scale)), max(1, round(fh * scale))
    px, py = (width - nw) // 2, (height - nh) // 2
    return nw, nh, Meta(fw, fh, width, height, scale, scale, float(px), float(py))


def _placed(scaled: Image, meta: Meta, pad: int) -> Image:
    """``scaled`` (the frame at its size in the input) on the input's canvas of ``pad``."""
    nh, nw = scaled.shape[:2]
    if (nw, nh) == (meta.input_w, meta.input_h):
        return scaled
    canvas = np.full((meta.input_h, meta.input_w, 3), pad, dtype=np.uint8)
    px, py = int(meta.pad_x), int(meta.pad_y)
    canvas[py : py + nh, px : px + nw] = scaled
    return canvas


def resize(frame: Image, width: int, height: int, mode: str, pad: int = 114) -> tuple[Image, Meta]:
    """Resize a BGR frame to the model input size, stretched or letterboxed (padded with
    ``pad``: grey 114 as YOLO trains; MediaPipe's detectors are trained with black, 0)."""
    import cv2

    fh, fw = frame.shape[:2]
    nw, nh, meta = placement(fw, fh, width, height, mode)
    scaled = np.asarray(cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR), np.uint8)
    return _placed(scaled, meta, pad), meta


def fixed_shape(shape: tuple[int, ...], desc: ModelDescription) -> tuple[int, ...]:
    """``shape`` with dynamic dimensions (-1) fixed: batch 1, height and width from the
    description's options ``input_width``/``input_height`` (or ``input_size``), as for graphs
    that resize inside (TensorFlow Object Detection API). Unfixable: ``ModelError``."""
    if len(shape) != 4 or all(d > 0 for d in shape):
        return shape
    size = desc.options.get("input_size")
    width, height = desc.options.get("input_width", size), desc.options.get("input_height", size)
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise ModelError(
            f"the model's input shape {list(shape)} is dynamic: set 'shape' in config.json, or "
            "'input_size' in the model description's options"
        )
    hw = (2, 3) if desc.layout == "NCHW" else (1, 2)
    out = list(shape)
    out[0] = 1 if out[0] <= 0 else out[0]
    for axis, value in zip(hw, (height, width), strict=True):
        out[axis] = value if out[axis] <= 0 else out[axis]
    return tuple(out)


def _pad(desc: ModelDescription) -> int:
    pad = desc.options.get("pad", 114)
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 255:
        raise ModelError(f"option 'pad' (letterbox padding) must be 0-255, got {pad!r}")
    return pad


def takes_raw_pixels(desc: ModelDescription, dtype: str) -> bool:
    """Whether an input of element type ``dtype`` takes the pixels as they are: uint8, and the
    description's mean 0 and scale 1 (no float tensor to make and round back)."""
    return (
        dtype.lower() in ("uint8", "u8")
        and all(m == 0 for m in desc.mean)
        and all(s == 1 for s in desc.scale)
    )


def _tensor(image: Image, desc: ModelDescription, raw: bool = False) -> Input:
    """The input-sized image (in the model's colour order) -> ``(pixel - mean) / scale`` in the
    model's layout, batch 1 (``raw``: the uint8 pixels in that layout)."""
    import cv2

    if raw:
        pixels = image.transpose(2, 0, 1) if desc.layout == "NCHW" else image
        return np.ascontiguousarray(pixels[np.newaxis], dtype=np.uint8)

    if not all(desc.scale):
        raise ModelError(f"the model description's scale {desc.scale} holds a zero")
    # one vectorised pass (numpy's astype, subtract and divide made three copies: the largest
    # share of the infer worker's own Python time per result in a profile)
    if len(set(desc.mean)) == 1 and len(set(desc.scale)) == 1:
        inv = 1.0 / desc.scale[0]
        tensor = np.asarray(
            cv2.addWeighted(image, inv, image, 0.0, -desc.mean[0] * inv, dtype=cv2.CV_32F),
            dtype=np.float32,
        )
    else:  # per channel: two passes, no temporaries
        tensor = np.empty(image.shape, dtype=np.float32)
        np.subtract(image, np.asarray(desc.mean, dtype=np.float32), out=tensor, dtype=np.float32)
        tensor *= np.asarray([1.0 / s for s in desc.scale], dtype=np.float32)
    if desc.layout == "NCHW":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[np.newaxis], dtype=np.float32)


def prepare(
    frame: Image, desc: ModelDescription, shape: tuple[int, ...], *, raw: bool = False
) -> tuple[Input, Meta]:
    """A BGR ``uint8`` frame -> the model's input tensor (batch 1) and the mapping back;
    ``raw``: the pixels in uint8 (:func:`takes_raw_pixels`)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ModelError(f"frame must be HxWx3 BGR, got shape {list(frame.shape)}")
    width, height = input_size(fixed_shape(shape, desc), desc.layout)
    import cv2

    image, meta = resize(frame, width, height, desc.resize, _pad(desc))
    if desc.color == "RGB":
        image = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return _tensor(image, desc, raw), meta


def prepare_i420(
    yuv: Image, desc: ModelDescription, shape: tuple[int, ...], *, raw: bool = False
) -> tuple[Input, Meta] | None:
    """An I420 frame ``(h * 3 / 2, w)`` -> what :func:`prepare` makes of it in BGR, without
    converting the frame: each plane is scaled to the frame's size in the input, and only those
    pixels are converted (for a 720p frame and a 192 px input, a twentieth of them). ``None``
    when that size is odd (I420 holds even sizes): then convert the frame and use
    :func:`prepare`."""
    fh, fw = (yuv.shape[0] * 2 // 3, yuv.shape[1]) if yuv.ndim == 2 else (0, 0)
    if not fw or not fh or fw % 2 or fh % 2 or fh * 3 // 2 != yuv.shape[0]:
        raise ModelError(f"an I420 frame must be (h * 3 / 2, w), even, got {list(yuv.shape)}")
    width, height = input_size(fixed_shape(shape, desc), desc.layout)
    pad = _pad(desc)
    nw, nh, meta = placement(fw, fh, width, height, desc.resize)
    if nw % 2 or nh % 2:
        return None
    import cv2

    small = np.empty((nh * 3 // 2, nw), dtype=np.uint8)
    for src, dst in zip(plane_views(yuv, fw, fh), plane_views(small, nw, nh), strict=True):
        cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
    code = cv2.COLOR_YUV2RGB_I420 if desc.color == "RGB" else cv2.COLOR_YUV2BGR_I420
    scaled = np.asarray(cv2.cvtColor(small, code), dtype=np.uint8)
    return _tensor(_placed(scaled, meta, pad), desc, raw), meta


def tiles(
    width: int, height: int, cols: int, rows: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles ``(x1, y1, x2, y2)`` covering a ``width`` x ``height`` frame, ``cols``
    across and ``rows`` down, neighbours sharing ``overlap`` of a tile's size; the last tile of
    a row or column ends exactly at the frame's edge."""
    if cols < 1 or rows < 1 or not 0.0 <= overlap < 1.0 or width < cols or height < rows:
        raise ModelError(
            f"cannot cut a {width}x{height} frame into {cols}x{rows} tiles overlapping {overlap}"
        )

    def spans(size: int, n: int) -> list[tuple[int, int]]:
        tile = size / (n - (n - 1) * overlap)
        step = tile * (1.0 - overlap)
        out = []
        for i in range(n):
            start = min(round(i * step), size - 1)
            end = size if i == n - 1 else min(size, round(i * step + tile))
            out.append((start, max(end, start + 1)))
        return out

    return [(x1, y1, x2, y2) for y1, y2 in spans(height, rows) for x1, x2 in spans(width, cols)]
