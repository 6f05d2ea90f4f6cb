"""What every remote backend (a model server over the network) shares; the ``kserve`` and
``tfs`` backends only say how their protocol asks for metadata, sends tensors and reads results.

- :class:`RemoteModel`: the metadata is fetched once, when the model is first asked for (name,
  served version, input and output specs); ``infer`` builds the request, sends it, reads the
  reply. Every client-library exception is mapped at this boundary by the backend's
  ``map_error`` into ``BackendError`` (unreachable, timeout, server error) or ``ModelError``
  (unknown model or version, refused inputs), so callers only see ``OvbusError``.
- :class:`RemoteBackend`: one client (connection) per server, models cached by
  ``(name, version)``; a model that could not be made is tried again on the next call.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from ovbus.errors import ModelError, OvbusError
from ovbus.log import get_logger
from services.infer.backend import Array, TensorSpec

log = get_logger(__name__)

M = TypeVar("M", bound="RemoteModel")


class RemoteModel(ABC):
    """A model version served by a model server."""

    backend: str
    #: no preference: the server queues its own requests; the scheduler keeps 4 in flight
    nireq: int | None = None

    def __init__(
        self, client: Any, server: str, name: str, version: int | None, timeout: float
    ) -> None:
        self._client = client
        self._server = server
        self.name = name
        self.device = f"remote:{server}"
        what = f"model {name!r}" + (f" version {version}" if version else "")
        try:
            meta = self._metadata(version, timeout)
        except OvbusError:
            raise
        except Exception as e:
            raise self.map_error(e, what) from e
        self.version, self._inputs, self._outputs = self._describe(meta, version)

    # what a protocol provides ---------------------------------------------------------------
    @abstractmethod
    def _metadata(self, version: int | None, timeout: float) -> Any:
        """Ask the server for the model's metadata (may raise the client's exceptions)."""

    @abstractmethod
    def _describe(
        self, meta: Any, version: int | None
    ) -> tuple[int, dict[str, TensorSpec], dict[str, TensorSpec]]:
        """The served version, the inputs and the outputs, from the metadata."""

    @abstractmethod
    def _request(self, inputs: dict[str, Array]) -> Any:
        """The request for ``inputs``; raises ``ModelError`` for tensors it cannot send."""

    @abstractmethod
    def _send(self, request: Any, timeout: float) -> Any:
        """Run the request on the server (may raise the client's exceptions)."""

    @abstractmethod
    def _results(self, reply: Any) -> dict[str, Array]:
        """The output tensors of the reply; raises ``ModelError`` if they do not match."""

    @abstractmethod
    def map_error(self, error: Exception, what: str) -> ModelError:
        """The client's exception as ``BackendError`` or ``ModelError``."""

    # the Model interface --------------------------------------------------------------------
    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def outputs(self) -> dict[str, TensorSpec]:
        return dict(self._outputs)

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        request = self._request(inputs)
        try:
            reply = self._send(request, timeout)
        except OvbusError:
            raise
        except Exception as e:
            raise self.map_error(e, f"model {self.name!r}") from e
        return self._results(reply)

    def close(self) -> None:  # noqa: B027 (deliberately empty, not abstract)
        """Nothing to release per model: the connection belongs to the backend."""


class RemoteBackend(ABC, Generic[M]):
    """Models of one model server, each made once per (name, version)."""

    name: str

    def __init__(self, server: str, *, timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self._client = self._connect(server)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, int | None], M] = {}

    @abstractmethod
    def _connect(self, server: str) -> Any:
        """The protocol's client for ``server`` (raises ``BackendError`` if it is missing)."""

    @abstractmethod
    def _model(self, name: str, version: int | None) -> M:
        """Make the model (fetches its metadata)."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Close the client's connection."""

    def model(self, name: str, version: int | None = None) -> M:
        """Metadata is fetched once per model; a failure is raised (and retried next call)."""
        key = (name, version)
        with self._lock:
            found = self._models.get(key)
        if found is not None:
            return found
        model = self._model(name, version)
        log.info("remote model ready", model=name, version=model.version, server=self.server)
        with self._lock:
            return self._models.setdefault(key, model)

    def close(self) -> None:
        try:
            self._disconnect()
        except Exception as e:
            log.warning("closing the connection to the model server failed", error=str(e))
