"""Shadow runs: a candidate model on the frames a camera's serving model just ran on, compared
box by box, the figures published on ``cameras/<cam>/shadow``.

The camera loop only *offers* a frame (:meth:`ShadowRunner.offer`, constant time): the candidate
runs on its own thread, one frame at a time. A frame offered while the candidate is busy, resting
(its ``budget`` of wall time, after a failure one second) or sooner than ``max_fps`` is skipped
for the shadow and counted; the camera's results are never held back, whatever the candidate
does (fails to load, times out, returns wrong outputs, runs ten times slower).

Matching (:func:`compare`) is per label, greedy by IoU: the pair with the highest IoU first, each
box used once, pairs below ``iou`` left unmatched. The serving model is the reference: the
candidate's precision is matched / its boxes, its recall matched / the serving boxes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError
from ovbus.frames import Frame
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.detections import DetectedObject, ModelResult
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.shadow import LabelComparison, Latency, ModelRef, ShadowReport, ShadowSpec
from services.infer.backend import Model
from services.infer.run import Source, run_model

log = get_logger(__name__)

#: Seconds the candidate rests after a failure (a broken candidate is not retried every frame).
ERROR_REST_S = 1.0

Image = npt.NDArray[np.uint8]
RunCandidate = Callable[[PipelineModel, Source], ModelResult]


def box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes (0 when either is empty)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = float(iw * ih)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(slots=True)
class LabelMatch:
    """One label on one frame (or summed over frames)."""

    serving: int = 0
    candidate: int = 0
    deltas: list[float] = field(default_factory=list)  # candidate - serving score, per match

    @property
    def matched(self) -> int:
        return len(self.deltas)


def compare(
    serving: Sequence[DetectedObject], candidate: Sequence[DetectedObject], iou: float = 0.5
) -> dict[str, LabelMatch]:
    """Match the candidate's boxes to the serving model's, per label (see the module doc)."""
    out: dict[str, LabelMatch] = {}
    for label in sorted({o.label for o in serving} | {o.label for o in candidate}):
        s = [o for o in serving if o.label == label]
        c = [o for o in candidate if o.label == label]
        pairs = sorted(
            (
                (box_iou(a.box, b.box), i, j)
                for i, a in enumerate(s)
                for j, b in enumerate(c)
                if box_iou(a.box, b.box) >= iou
            ),
            reverse=True,
        )
        used_s: set[int] = set()
        used_c: set[int] = set()
        match = LabelMatch(serving=len(s), candidate=len(c))
        for _, i, j in pairs:
            if i not in used_s and j not in used_c:
                used_s.add(i)
                used_c.add(j)
                match.deltas.append(c[j].score - s[i].score)
        out[label] = match
    return out


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def latency(values: Sequence[float]) -> Latency | None:
    if not values:
        return None
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return Latency(
        mean_ms=round(sum(ordered) / len(ordered), 3), p50_ms=pick(0.5), p99_ms=pick(0.99)
    )


class ShadowTally:
    """The figures of one report interval; :meth:`report` hands them out and starts afresh."""

    def __init__(self) -> None:
        self.labels: dict[str, LabelMatch] = {}
        self.frames = 0
        self.skipped = 0
        self.errors = 0
        self.error: ErrorInfo | None = None
        self.serving_ms: list[float] = []
        self.candidate_ms: list[float] = []
        self.serving_version: int | None = None
        self.candidate_version: int | None = None

    def add(self, serving: ModelResult, candidate: ModelResult, iou: float) -> None:
        self.frames += 1
        self.serving_ms.append(serving.inference_ms)
        self.candidate_ms.append(candidate.inference_ms)
        self.serving_version, self.candidate_version = serving.version, candidate.version
        for label, m in compare(serving.objects, candidate.objects, iou).items():
            total = self.labels.setdefault(label, LabelMatch())
            total.serving += m.serving
            total.candidate += m.candidate
            total.deltas += m.deltas

    def fail(self, error: ErrorInfo, serving: ModelResult, candidate: int | None) -> None:
        """The candidate (``candidate``: the version asked for) failed on a frame."""
        self.errors += 1
        self.error = error
        self.serving_version = serving.version
        if candidate is not None:
            self.candidate_version = candidate

    def report(
        self, camera: str, node: str, serving: str, candidate: str, interval: float
    ) -> ShadowReport:
        labels = [
            LabelComparison(
                label=label,
                serving=m.serving,
                candidate=m.candidate,
                matched=m.matched,
                precision=_ratio(m.matched, m.candidate),
                recall=_ratio(m.matched, m.serving),
                score_delta_mean=round(sum(m.deltas) / len(m.deltas), 4) if m.deltas else None,
                score_delta_max=round(max(abs(d) for d in m.deltas), 4) if m.deltas else None,
            )
            for label, m in sorted(self.labels.items())
        ]
        n_s = sum(m.serving for m in self.labels.values())
        n_c = sum(m.candidate for m in self.labels.values())
        matched = sum(m.matched for m in self.labels.values())
        agreement = None
        if self.frames:
            agreement = round(2 * matched / (n_s + n_c), 4) if n_s + n_c else 1.0
        return ShadowReport(
            camera=camera,
            node=node,
            serving=ModelRef(name=serving, version=self.serving_version),
            candidate=ModelRef(name=candidate, version=self.candidate_version),
            interval_s=round(interval, 3),
            frames_compared=self.frames,
            frames_skipped=self.skipped,
            errors=self.errors,
            error=self.error,
            serving_objects=n_s,
            candidate_objects=n_c,
            matched=matched,
            agreement=agreement,
            precision=_ratio(matched, n_c),
            recall=_ratio(matched, n_s),
            labels=labels,
            serving_latency=latency(self.serving_ms),
            candidate_latency=latency(self.candidate_ms),
        )


@dataclass(slots=True)
class _Job:
    spec: ShadowSpec
    candidate: PipelineModel
    serving: ModelResult
    image: Source  # the frame as the serving model ran on it
    meta: object = None


#: told of each compared frame: (image, serving, candidate, iou, the offer's ``meta``)
Compared = Callable[[Source, ModelResult, ModelResult, float, object], None]


def candidate_model(shadow: ShadowSpec, serving: PipelineModel) -> PipelineModel:
    """The candidate as a pipeline model, tiled as the serving model is."""
    return PipelineModel(
        name=shadow.model,
        version=shadow.version,
        threshold=shadow.threshold,
        labels=shadow.labels,
        tiling=serving.tiling,
    )


class ShadowRunner:
    """The shadow of one camera: :meth:`frame` (or :meth:`offer`) from the camera's job, the
    candidate on a thread of its own (started with the first shadow spec), reports through
    ``publish``, each comparison to ``compared``."""

    def __init__(
        self,
        camera: str,
        node: str,
        run: RunCandidate,
        publish: Callable[[ShadowReport], None],
        *,
        compared: Compared | None = None,
    ) -> None:
        self.camera = camera
        self.node = node
        self.run = run
        self.publish = publish
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._job: _Job | None = None
        self._busy = False
        self._rest_until = 0.0
        self._spec: ShadowSpec | None = None
        self._serving = ""
        self._tally = ShadowTally()
        self._since = time.monotonic()
        self._thread: threading.Thread | None = None
        self.compared = compared  # dataset collection (services/infer/recording.py)

    def frame(self, spec: PipelineSpec, frame: Frame, results: Sequence[ModelResult]) -> None:
        """A served frame (:class:`services.infer.parts.FrameTap`): offered to the candidate,
        with what dataset collection needs when the camera collects disagreements."""
        rule = spec.dataset
        meta = (rule, frame) if rule and rule.disagreement else None
        self.offer(spec, frame, results, meta)

    def offer(
        self,
        spec: PipelineSpec,
        image: Source,
        results: Sequence[ModelResult],
        meta: object = None,
    ) -> None:
        """The serving results of a frame: the candidate runs on it if it is free (constant
        time: never waits for the candidate); ``meta`` goes back to :attr:`compared`. The
        candidate runs on the frame as the serving model did (from its I420 planes, unconverted),
        so a model shadowing itself gives the serving results exactly."""
        shadow = spec.shadow
        if shadow is None:
            if self._spec is not None:
                self._flush(time.monotonic())
                with self._lock:
                    self._spec = None
            return
        name = shadow.serving or spec.models[0].name
        pm = next((m for m in spec.models if m.name == name), None)
        serving = next((r for r in results if r.name == name), None)
        now = time.monotonic()
        with self._lock:
            if shadow != self._spec or name != self._serving:  # a new comparison
                self._spec, self._serving = shadow, name
                self._tally, self._since = ShadowTally(), now
            if pm is None or serving is None:  # the serving model failed on this frame
                return
            if self._busy or now < self._rest_until:
                self._tally.skipped += 1
                return
            self._busy = True
            self._job = _Job(shadow, candidate_model(shadow, pm), serving, image, meta)
        self._ensure_thread()
        self._wake.set()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"shadow:{self.camera}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                job, self._job = self._job, None
            if job is not None:
                self._run(job)
            self._flush(time.monotonic(), due=True)

    def _run(self, job: _Job) -> None:
        started = time.monotonic()
        error: ErrorInfo | None = None
        result: ModelResult | None = None
        try:
            result = self.run(job.candidate, job.image)
        except OvbusError as e:
            error = ErrorInfo.of(e)
        except Exception as e:  # a candidate never takes the camera down
            log.exception("shadow candidate crashed", camera=self.camera, model=job.spec.model)
            error = ErrorInfo.of(e)
        elapsed = time.monotonic() - started
        rest = elapsed * (1.0 / job.spec.budget - 1.0)
        if job.spec.max_fps is not None:
            rest = max(rest, 1.0 / job.spec.max_fps - elapsed)
        if error is not None:
            rest = max(rest, ERROR_REST_S)
        with self._lock:
            if job.spec == self._spec:
                if result is not None:
                    self._tally.add(job.serving, result, job.spec.iou)
                elif error is not None:
                    self._tally.fail(error, job.serving, job.candidate.version)
            self._rest_until = time.monotonic() + rest
            self._busy = False
        if result is not None and self.compared is not None:
            self.compared(job.image, job.serving, result, job.spec.iou, job.meta)

    def _flush(self, now: float, *, due: bool = False) -> None:
        with self._lock:
            spec = self._spec
            if spec is None:
                return
            interval = now - self._since
            if due and interval < spec.report_interval_s:
                return
            tally, self._tally, self._since = self._tally, ShadowTally(), now
            serving = self._serving
        if not (tally.frames or tally.skipped or tally.errors):
            return
        report = tally.report(self.camera, self.node, serving, spec.model, interval)
        try:
            self.publish(report)
        except OvbusError as e:
            log.warning("shadow report not published", camera=self.camera, error=e.message)

    def stop(self) -> None:
        """Stop the candidate's thread; what was compared since the last report is reported."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._flush(time.monotonic())


def model_runner(
    model: Callable[[str, int | None], Model],
    describe: Callable[[str], ModelDescription],
    timeout: float,
) -> RunCandidate:
    """Run a pipeline model on an image through a backend (``backend.model``) and the model
    descriptions (``descriptions.get``): what shadows and replays run."""

    def run(pm: PipelineModel, image: Source) -> ModelResult:
        return run_model(model(pm.name, pm.version), describe(pm.name), image, pm, timeout)

    return run
