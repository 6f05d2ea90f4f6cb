"""Version swaps off the serving path: when a camera's spec names a model version (or a model)
it has not run yet, the new one is loaded and compiled on a thread of its own while the camera
keeps running the version it ran before (that thread at a lower CPU priority than serving,
:mod:`ovbus.priority`); the camera switches on its first frame after the load
ended (or failed: then the failure is the camera's, as before). Nothing waits for a compile but
a camera that has never run the model.

The backend's own reloads (config.json or the model files changed) are already swapped
atomically by the backend; this covers the spec side (a version pinned, unpinned or changed, a
canary rollout's pins).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ovbus.errors import OvbusError
from ovbus.log import get_logger
from ovbus.payloads.pipeline import PipelineModel
from ovbus.priority import lower_this_thread

log = get_logger(__name__)

Key = tuple[str, int | None]


class VersionSwap:
    """Which version of each model one camera runs now (see the module docstring)."""

    def __init__(self, load: Callable[[str, int | None], object], camera: str = "") -> None:
        self.load = load
        self.camera = camera
        self._lock = threading.Lock()
        self._ready: set[Key] = set()
        self._loading: set[Key] = set()
        self._current: dict[str, Key] = {}  # model name -> the key the camera runs

    def choose(self, pm: PipelineModel) -> PipelineModel:
        """``pm``, or ``pm`` at the version the camera ran before while ``pm``'s loads."""
        key: Key = (pm.name, pm.version)
        with self._lock:
            previous = self._current.get(pm.name)
            if key in self._ready or previous is None or previous == key:
                self._ready.add(key)  # first use of a model: loaded on the serving path
                self._current[pm.name] = key
                return pm
            start = key not in self._loading
            self._loading.add(key)
        if start:
            log.info("loading a new version beside the serving one", camera=self.camera,
                     model=pm.name, version=pm.version, serving=previous[1])  # fmt: skip
            threading.Thread(
                target=self._load, args=(key,), name=f"swap:{pm.name}", daemon=True
            ).start()
        return pm.model_copy(update={"version": previous[1]})

    def _load(self, key: Key) -> None:
        lower_this_thread()  # the compile aside yields the CPU to the frames being served
        try:
            self.load(*key)
        except OvbusError as e:  # the camera meets the error itself when it switches
            log.warning("new version failed to load", camera=self.camera, model=key[0],
                        version=key[1], error=e.message)  # fmt: skip
        except Exception:
            log.exception("new version failed to load", camera=self.camera, model=key[0])
        finally:
            with self._lock:
                self._loading.discard(key)
                self._ready.add(key)

    def loading(self) -> list[Key]:
        with self._lock:
            return sorted(self._loading, key=str)
