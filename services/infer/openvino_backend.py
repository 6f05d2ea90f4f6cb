"""The ``openvino`` backend: the OpenVINO runtime in-process, reading the models folder as OVMS.

Each model version is compiled once for its ``target_device`` with the THROUGHPUT or LATENCY
hint and run through an ``AsyncInferQueue`` of ``nireq`` requests (default: the device's
optimal number), shared by the cameras; the scheduler keeps ``nireq + 1`` detections in flight.
``infer_threads`` sets ``INFERENCE_NUM_THREADS`` unless ``plugin_config`` does. A watcher polls
``config.json`` and the model folders every ``poll_s`` s and reloads a changed model, swapped in
atomically, at a lower CPU priority than serving; compiles go through OpenVINO's model cache
(``cache_dir``): a version compiled before, by this or an earlier worker, loads from it."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovbus.errors import BackendError, ErrorCode, ModelError, OvbusError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import (
    Dim,
    EntryProblem,
    Layout,
    ModelEntry,
    fingerprint,
    read_config,
    resolve,
)
from ovbus.model_repository.external_data import check_model_file
from ovbus.priority import lower_this_thread
from services.infer.backend import Array, TensorSpec

log = get_logger(__name__)

#: Seconds a replaced model version stays open for the inferences that took it before the swap.
CLOSE_AFTER_S = 15.0


@dataclass(slots=True)
class _Slot:
    event: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, Array] | None = None
    error: str | None = None


def _partial(shape: tuple[Dim, ...]) -> ov.PartialShape:
    return ov.PartialShape(
        [ov.Dimension(*d) if isinstance(d, tuple) else ov.Dimension(d) for d in shape]
    )


def apply_shape(model: Any, entry: ModelEntry) -> None:
    """OVMS ``shape`` (a tuple for the only input, or per input; ``-1`` and ranges stay
    dynamic), else ``batch_size`` on the batch dimension (``N`` of the layout, or the first).
    ``"auto"`` leaves the model as it is: OVMS would reshape it per request, OpenVINO's dynamic
    dimensions (``-1``) are the in-process way."""
    if isinstance(entry.shapes, dict):
        fixed = {k: _partial(v) for k, v in entry.shapes.items() if v != "auto"}
        if fixed:
            model.reshape(fixed)
    elif isinstance(entry.shapes, tuple):
        model.reshape(_partial(entry.shapes))
    elif entry.batch is not None and entry.batch != "auto":
        for param in model.get_parameters():
            if param.get_layout().empty:
                param.set_layout(ov.Layout("N..."))
        batch = entry.batch
        ov.set_batch(model, ov.Dimension(*batch) if isinstance(batch, tuple) else batch)


def apply_layout(model: Any, layouts: dict[str, Layout] | Layout) -> Any:
    """OVMS ``layout``: ``NHWC:NCHW`` = the client sends NHWC, the model is NCHW (OpenVINO
    inserts the transpose); ``NCHW`` alone only names the model's layout. A string applies to
    the only input; a dict maps input or output names to such layouts."""
    if not isinstance(layouts, dict):
        if len(model.inputs) != 1:
            raise ModelError(
                "'layout' as a string needs a model with one input; use {input: layout}",
                code=ErrorCode.INVALID_CONFIG,
            )
        layouts = {model.inputs[0].get_any_name(): layouts}
    inputs = {n for port in model.inputs for n in port.get_names()}
    outputs = {n for port in model.outputs for n in port.get_names()}
    ppp = ov.preprocess.PrePostProcessor(model)
    for name, (first, second) in layouts.items():
        if name in inputs:
            step: Any = ppp.input(name)
        elif name in outputs:
            step = ppp.output(name)
        else:
            raise ModelError(
                f"'layout' names {name!r}, which is not an input or output of the model",
                code=ErrorCode.INVALID_CONFIG,
            )
        if second is None:
            step.model().set_layout(ov.Layout(first))
        else:
            step.tensor().set_layout(ov.Layout(first))
            step.model().set_layout(ov.Layout(second))
    return ppp.build()


class OpenVINOModel:
    """One compiled model version with its asynchronous request queue."""

    backend = "openvino"

    def __init__(
        self,
        core: ov.Core,
        entry: ModelEntry,
        version: int,
        path: Path,
        hint: str,
        threads: int = 0,
    ) -> None:
        self.name = entry.name
        self.version = version
        self.device = entry.device
        cfg = entry.config
        try:
            check_model_file(entry.name, path)  # an ONNX's external data stays in its folder
            model = core.read_model(str(path))
            apply_shape(model, entry)
            if entry.layouts is not None:
                model = apply_layout(model, entry.layouts)
            props: dict[str, Any] = {"PERFORMANCE_HINT": hint}
            if threads and self.device.upper().startswith("CPU"):
                props["INFERENCE_NUM_THREADS"] = threads
            props.update({str(k): v for k, v in (cfg.plugin_config or {}).items()})
            self._compiled = core.compile_model(model, self.device, props)
            self.from_cache = bool(self._compiled.get_property("LOADED_FROM_CACHE"))
            nireq = cfg.nireq or int(
                self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            )
            self._queue = ov.AsyncInferQueue(self._compiled, nireq)
        except OvbusError:
            raise
        except Exception as e:  # OpenVINO raises RuntimeError and friends
            raise ModelError(
                f"model {self.name!r} version {version} ({path.name}) failed to load on "
                f"{self.device}: {str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__}",
                code=ErrorCode.MODEL_LOAD_FAILED,
            ) from e
        self.nireq = nireq
        self._inputs = {s.name: s for s in map(TensorSpec.of, self._compiled.inputs)}
        self._outputs = [TensorSpec.of(p) for p in self._compiled.outputs]
        self._queue.set_callback(self._done)
        self._closed = False
        self._submit = threading.Lock()

    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def outputs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in self._outputs}

    def _done(self, request: ov.InferRequest, slot: _Slot) -> None:
        try:
            slot.outputs = {
                spec.name: np.array(request.get_output_tensor(i).data, copy=True)
                for i, spec in enumerate(self._outputs)
            }
        except Exception as e:
            slot.error = f"{type(e).__name__}: {e}"
        slot.event.set()

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        if self._closed:
            raise BackendError(f"model {self.name!r} version {self.version} was unloaded")
        slot = _Slot()
        try:
            with self._submit:  # AsyncInferQueue.start_async is not safe across threads
                # the request reads the caller's arrays (kept alive until the result): no copy
                self._queue.start_async(inputs, slot, share_inputs=True)
        except Exception as e:
            raise ModelError(
                f"model {self.name!r} refused its inputs: {e}", code=ErrorCode.MODEL_OUTPUT_MISMATCH
            ) from e
        if not slot.event.wait(timeout):
            raise BackendError(
                f"model {self.name!r}: no result within {timeout:.1f} s", code=ErrorCode.TIMEOUT
            )
        if slot.error is not None or slot.outputs is None:
            raise BackendError(f"model {self.name!r} failed to run: {slot.error}")
        return slot.outputs

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.wait_all()


@dataclass(slots=True)
class _Loaded:
    print: str
    model: OpenVINOModel | None = None
    error: ModelError | None = None


class OpenVINOBackend:
    """Models from ``<models>/config.json``, compiled in-process, reloaded when they change."""

    name = "openvino"

    def __init__(
        self,
        models: Path,
        *,
        hint: str = "THROUGHPUT",
        poll_s: float = 1.0,
        infer_threads: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        self.config_path = models / "config.json"
        self.hint = hint
        self.infer_threads = infer_threads
        self.core = ov.Core()
        if cache_dir is not None:  # a compile done before (same model, device, settings) is cheap
            self.core.set_property({"CACHE_DIR": str(cache_dir)})  # made on the first compile
        self._lock = threading.RLock()
        self._entries: dict[str, ModelEntry] = {}
        self._config_error: StoreError | None = None
        self._problems: dict[str, EntryProblem] = {}
        self._config_stamp: tuple[int, int] | None = None
        self._loaded: dict[tuple[str, int | None], _Loaded] = {}
        self._key_locks: dict[tuple[str, int | None], threading.Lock] = {}
        self._stop = threading.Event()
        self._refresh_config()
        self._watcher = threading.Thread(
            target=self._watch, args=(poll_s,), name="ov-watch", daemon=True
        )
        self._watcher.start()

    # config -------------------------------------------------------------------------------
    def _refresh_config(self) -> None:
        try:
            st = self.config_path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._config_stamp and self._config_stamp is not None:
            return
        self._config_stamp = stamp
        try:
            repo = read_config(self.config_path)
        except StoreError as e:
            with self._lock:
                if self._config_error is None or self._config_error.message != e.message:
                    if e.code == ErrorCode.NOT_FOUND:  # first start: the zoo has not written it
                        log.info("no config.json yet", path=str(self.config_path))
                    else:  # as OVMS: the models loaded from the last good file keep running
                        log.error(
                            "config.json refused", path=str(self.config_path), error=e.message
                        )
                self._config_error = e
            return
        problems = {p.name: p for p in repo.problems}
        with self._lock:
            known = self._problems
            self._entries, self._problems, self._config_error = repo.entries, problems, None
        for problem in repo.problems:
            if known.get(problem.name) != problem:  # each problem is logged once
                log.error("config.json entry skipped", model=problem.name, error=problem.message)
        log.info("config.json read", path=str(self.config_path), models=sorted(repo.entries))

    def problems(self) -> list[EntryProblem]:
        """The entries of config.json that are skipped, with their cause."""
        with self._lock:
            return list(self._problems.values())

    def _print(self, name: str, version: int | None = None) -> str:
        """What a loaded model is compared against to know it must be reloaded: its entry
        but for the version policy, the version it resolves to, that version's files. A
        policy change that leaves the version alone (a rollout serving one more) recompiles
        nothing, so the cameras running it lose no frame to a compile."""
        with self._lock:
            entry = self._entries.get(name)
            problem = self._problems.get(name)
        if entry is None:
            return f"skipped: {problem.message}" if problem is not None else "missing"
        try:
            chosen, _ = resolve(entry, version)
        except ModelError as e:
            return f"{fingerprint(entry)}: {e.message}"
        parts = [entry.config.model_dump_json(exclude={"model_version_policy"}), str(chosen)]
        folder = entry.base / str(chosen)
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                st = path.stat()
                parts.append(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def _watch(self, poll_s: float) -> None:
        lower_this_thread()  # reloads compile here, beside the serving version
        while not self._stop.wait(poll_s):
            try:
                self._refresh_config()
                self._reload_changed()
            except Exception:
                log.exception("model watcher failed")

    def _reload_changed(self) -> None:
        with self._lock:
            keys = list(self._loaded)
        for key in keys:
            name, version = key
            with self._lock:
                loaded = self._loaded.get(key)
            if loaded is None:
                continue
            if self._print(name, version) == loaded.print:
                continue
            log.info("model changed, reloading", model=name, version=version)
            fresh = self._load(name, version)
            with self._lock:
                old = self._loaded.get(key)
                self._loaded[key] = fresh
            with self._lock:
                shared = old is not None and any(
                    loaded.model is old.model for loaded in self._loaded.values()
                )
            if old is not None and old.model is not None and not shared:
                # closed once the frames that took the old one before the swap are done
                closer = threading.Timer(CLOSE_AFTER_S, old.model.close)
                closer.daemon = True
                closer.start()

    # loading ------------------------------------------------------------------------------
    def _load(self, name: str, version: int | None) -> _Loaded:
        stamp = self._print(name, version)
        with self._lock:
            entry = self._entries.get(name)
            problem = self._problems.get(name)
            config_error = self._config_error
        if entry is None:
            if problem is not None:  # skipped as OVMS skips it; the cause goes to the camera
                error = ModelError(str(problem), code=ErrorCode.INVALID_CONFIG)
            elif config_error is not None:
                error = ModelError(config_error.message, code=config_error.code)
            else:
                error = ModelError(
                    f"model {name!r} is not in {self.config_path}", code=ErrorCode.NOT_FOUND
                )
            return _Loaded(stamp, error=error)
        try:
            chosen, path = resolve(entry, version)
            with self._lock:  # the same version compiled for another key (pinned or newest)
                same = [
                    loaded.model
                    for (other, _), loaded in self._loaded.items()
                    if other == name and loaded.print == stamp and loaded.model is not None
                ]
            if same and same[0].version == chosen:
                return _Loaded(stamp, model=same[0])
            model = OpenVINOModel(self.core, entry, chosen, path, self.hint, self.infer_threads)
        except ModelError as e:
            log.error("model failed to load", model=name, version=version, error=e.message)
            return _Loaded(stamp, error=e)
        log.info("model loaded", model=name, version=chosen, device=model.device,
                 nireq=model.nireq, from_cache=model.from_cache)  # fmt: skip
        return _Loaded(stamp, model=model)

    def model(self, name: str, version: int | None = None) -> OpenVINOModel:
        key = (name, version)
        with self._lock:
            loaded = self._loaded.get(key)
        if loaded is None:
            with self._lock:
                key_lock = self._key_locks.setdefault(key, threading.Lock())
            with key_lock:  # one load per key; cameras on other models are not held up
                with self._lock:
                    loaded = self._loaded.get(key)
                if loaded is None:
                    loaded = self._load(name, version)
                    with self._lock:
                        self._loaded[key] = loaded
        if loaded.model is None:
            assert loaded.error is not None
            raise loaded.error
        return loaded.model

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for item in loaded:
            if item.model is not None:
                item.model.close()
