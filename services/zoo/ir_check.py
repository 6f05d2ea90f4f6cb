"""Checks of a model before it is published, read from the files alone (no OpenVINO in the zoo
process: a truncated ``.bin`` would crash whoever maps it).

- :func:`check_weights`: every ``Const`` of an IR topology lies inside its ``.bin``; a truncated
  or short weights file is refused (OpenVINO maps the file and reads past its end otherwise).
- :func:`ir_outputs`: an IR's output tensor names, from its ``Result`` layers.
- :func:`check_outputs`: the output names a model description relies on (``options`` keys that
  end in ``output``; ``a|b`` names alternatives) are outputs of the model.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ovbus.errors import ErrorCode, FetchError, ModelError
from ovbus.payloads.model import ModelDescription


def _parse(xml: Path) -> ET.Element:
    try:
        return ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as e:
        raise FetchError(
            f"{xml.name} is not an OpenVINO IR: {e}", code=ErrorCode.BAD_PAYLOAD
        ) from e


def check_weights(xml: Path, weights: Path) -> None:
    """Raise ``FetchError(BAD_PAYLOAD)`` if a constant of ``xml`` lies outside ``weights``."""
    size = weights.stat().st_size
    needed = 0
    for data in _parse(xml).iterfind("./layers/layer[@type='Const']/data"):
        try:
            end = int(data.get("offset", "0")) + int(data.get("size", "0"))
        except ValueError as e:
            raise FetchError(
                f"{xml.name}: constant with a bad offset/size: {e}", code=ErrorCode.BAD_PAYLOAD
            ) from e
        needed = max(needed, end)
    if needed > size:
        raise FetchError(
            f"{weights.name} is truncated or does not belong to {xml.name}: {size} bytes, "
            f"the topology needs {needed}",
            code=ErrorCode.BAD_PAYLOAD,
        )


def ir_outputs(xml: Path) -> set[str]:
    """Every name of the IR's outputs: ``output_names`` of its ``Result`` layers and the
    ``names`` of the ports that feed them."""
    root = _parse(xml)
    layers = {layer.get("id"): layer for layer in root.iterfind("./layers/layer")}
    results = {i for i, layer in layers.items() if layer.get("type") == "Result"}
    names: set[str] = set()
    for i in results:
        names.update(n for n in layers[i].get("output_names", "").split(",") if n)
    for edge in root.iterfind("./edges/edge"):
        if edge.get("to-layer") not in results:
            continue
        source = layers.get(edge.get("from-layer"))
        if source is None:
            continue
        for port in source.iterfind("./output/port"):
            if port.get("id") == edge.get("from-port"):
                names.update(n.strip() for n in port.get("names", "").split(",") if n.strip())
    return names


def check_outputs(model: str, description: ModelDescription, outputs: set[str]) -> None:
    """Raise ``ModelError(MODEL_OUTPUT_MISMATCH)`` if the description names an output the
    model does not have."""
    wanted = {
        key: value
        for key, value in description.options.items()
        if key.endswith("output") and isinstance(value, str)
    }
    # "a|b": any of these names (the infer decoders take the first the model has)
    missing = {
        key: value
        for key, value in wanted.items()
        if not any(name in outputs for name in value.split("|"))
    }
    if missing:
        listed = ", ".join(f"{k}={v!r}" for k, v in sorted(missing.items()))
        raise ModelError(
            f"model {model!r}: its description names outputs it does not have ({listed}); "
            f"the model's outputs are {', '.join(sorted(outputs)) or 'unknown'}",
            code=ErrorCode.MODEL_OUTPUT_MISMATCH,
        )
