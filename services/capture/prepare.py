"""What a camera's producer runs: its source probed (a file's stream, a webcam's modes), served
as it comes or encoded (:func:`services.capture.plan.plan`), and the pipeline described."""

from __future__ import annotations

from dataclasses import dataclass

from ovbus.errors import StreamError
from ovbus.payloads.stream import Codec
from services.capture.encoders import encoder_description
from services.capture.plan import (
    DEFAULT,
    Native,
    Plan,
    Target,
    Wanted,
    choose_v4l2_mode,
    mode_caps,
    native_of_source,
    plan,
)
from services.capture.probe import probe_file, probe_v4l2
from services.capture.producer import passthrough_pipeline, producer_description
from services.capture.sources import (
    Geometry,
    Source,
    V4l2Format,
    check_file,
    device_of,
    passthrough_description,
    source_description,
)

__all__ = ["Output", "prepare"]


@dataclass(frozen=True, slots=True)
class Output:
    """How cameras are served (the same for every camera of a node)."""

    #: ``None``: the source's own codec (pass-through), H.264 for raw sources.
    codec: Codec | None
    encoder_element: str
    bitrate_kbps: int
    v4l2_format: V4l2Format
    #: ``False``: always decode and encode (``--no-passthrough``).
    passthrough: bool = True


def prepare(
    camera: str, source: Source, output: Output, wanted: Wanted, *, passthrough: bool = True
) -> tuple[Plan, str, Geometry | None]:
    """Probe the source, plan pass-through (unless ``passthrough`` is false: the camera was
    found to need encoding) or encoding, describe the producer pipeline; the geometry of an
    encoded one."""
    native = native_of_source(source.kind)
    caps: str | None = None
    if source.kind == "file":
        check_file(source.value)
        native = probe_file(source.value)
    elif source.kind == "v4l2":
        device = device_of(source)
        try:
            mode, rate = choose_v4l2_mode(
                probe_v4l2(device), wanted, output.v4l2_format, output.codec
            )
        except ValueError as e:
            raise StreamError(f"camera {camera}: {device}: {e}") from e
        caps = mode_caps(mode, rate)
        native = Native(mode.format, mode.width, mode.height, rate)
    assert native is not None
    allowed = output.passthrough and passthrough
    chosen = plan(native, wanted, output.codec, passthrough=allowed)
    if chosen.passthrough:
        head = passthrough_description(source, chosen.codec, caps, parsed=native.parsed)
        return chosen, passthrough_pipeline(head, source.live), None
    target = chosen.target or Target(None, None, None)
    geometry = None
    if target.width is not None and target.height is not None and target.fps is not None:
        geometry = Geometry(target.width, target.height, target.fps)
    head = source_description(source, geometry or DEFAULT, caps, still=native.still)
    encoder = encoder_description(
        chosen.codec, output.encoder_element, output.bitrate_kbps, target.fps or DEFAULT.fps
    )
    fixed = source.kind in ("v4l2", "testsrc") or (
        source.kind == "file" and (native.fps or native.still)
    )
    description = producer_description(head, target, encoder, source.live, fixed_rate=bool(fixed))
    return chosen, description, geometry
