"""The one backend interface every inference backend implements, and nothing more.

A :class:`Backend` opens :class:`Model` handles by name and version; a handle has ``inputs``,
``outputs``, ``infer``, ``close`` and ``nireq`` (the requests it wants in flight, which the
scheduler keeps). Pre- and post-processing never see which backend ran the
model, so the same frames give the same results through every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: name, static shape (``-1`` for dynamic dims), element type."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def of(cls, port: Any) -> TensorSpec:
        """The spec of an OpenVINO model's or compiled model's input or output port."""
        dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        return cls(port.get_any_name(), dims, str(port.get_element_type().to_dtype()))


class Model(Protocol):
    """A loaded model version, ready to run."""

    name: str
    version: int
    device: str
    backend: str

    @property
    def nireq(self) -> int | None:
        """Requests this model's device runs best with in flight (OpenVINO's optimal number of
        infer requests, or ``nireq`` from ``config.json``); ``None``: no preference (a model
        server), the scheduler keeps its own number."""
        ...

    def inputs(self) -> dict[str, TensorSpec]: ...

    def outputs(self) -> dict[str, TensorSpec]: ...

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        """Run once; raises ``BackendError`` (unreachable, timeout) or ``ModelError``."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    """A source of models: the OpenVINO runtime in-process, or a remote model server."""

    name: str

    def model(self, name: str, version: int | None = None) -> Model:
        """The model ``name`` at ``version`` (default: the newest served); raises
        ``ModelError`` (missing, failed to load) or ``BackendError`` (server unreachable)."""
        ...

    def close(self) -> None: ...
