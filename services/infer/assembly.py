"""One owned camera assembled from the worker's shared pieces: the one place that knows which
implementation serves each of a camera's interfaces (:mod:`services.infer.parts`):

- turns: the worker's one :class:`~services.infer.scheduler.Dispatcher`;
- intake: a :class:`~services.infer.intake.StreamIntake` with the worker's reader options;
- serving: :class:`~services.infer.serving.ModelServing` on the backend, the model
  descriptions, the worker's rollouts and the camera's own version swap;
- results and states: :class:`~services.infer.publishing.CameraResults` (with the camera's
  tracking, :class:`~services.infer.events.ObjectEvents`) and
  :class:`~services.infer.publishing.InferenceStates`, on one publisher;
- taps: the shadow (:class:`~services.infer.shadow.ShadowRunner`), then recording
  (:class:`~services.infer.recording.Recording`: replay frames, dataset collection).
"""

from __future__ import annotations

from dataclasses import dataclass

from ovbus.bus import Bus
from ovbus.pacing import DecodePacer
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.shadow import ShadowReport
from services.infer.backend import Backend
from services.infer.camera import CameraRunner, SpecDefaults
from services.infer.collect import Collector
from services.infer.descriptions import DescriptionStore
from services.infer.events import ObjectEvents
from services.infer.figures import CameraFigures
from services.infer.intake import ReaderOptions, StreamIntake
from services.infer.publishing import CameraResults, InferenceStates, SafePublisher
from services.infer.recording import Recording
from services.infer.replay import Recorder
from services.infer.rollouts import RolloutBoard
from services.infer.scheduler import Dispatcher
from services.infer.serving import ModelServing
from services.infer.settings import InferSettings
from services.infer.shadow import ShadowRunner, model_runner
from services.infer.swap import VersionSwap

#: Seconds one inference may take (a model server's, a stuck device's).
INFER_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class WorkerPieces:
    """What the cameras of one worker share."""

    node: str
    bus: Bus
    backend: Backend
    descriptions: DescriptionStore
    dispatcher: Dispatcher
    recorder: Recorder
    collector: Collector
    rollouts: RolloutBoard


def defaults_of(settings: InferSettings) -> SpecDefaults:
    """The spec of cameras without one (``--default-model``), and the worker's rate."""
    spec = None
    if settings.default_model:
        model = PipelineModel(name=settings.default_model, threshold=settings.default_threshold)
        spec = PipelineSpec(models=[model])
    return SpecDefaults(spec, settings.detect_fps)


class CameraAssembly:
    """Makes the worker's cameras (:meth:`build`), each with pieces of its own."""

    def __init__(self, pieces: WorkerPieces, settings: InferSettings) -> None:
        self.pieces = pieces
        self.defaults = defaults_of(settings)
        self.reading = ReaderOptions(
            frame_timeout=settings.frame_timeout,
            decoder_threads=settings.decoder_threads,
            login=settings.rtsp_login,  # from the worker's settings, never the bus
            tls_ca=settings.rtsp_tls_ca,
            pacer=DecodePacer(),  # the worker's cameras take turns decoding past saturation
        )

    def build(self, camera: str) -> CameraRunner:
        p = self.pieces
        topics = p.bus.topics
        publish = SafePublisher(camera, p.bus, CameraFigures())
        events = ObjectEvents(camera, p.node, topics, publish)
        recording = Recording(camera, p.recorder, p.collector)
        serving = ModelServing(
            camera,
            p.backend,
            p.descriptions.get,
            versions=VersionSwap(p.backend.model, camera),
            rollouts=p.rollouts,
            need=p.dispatcher.need,
            infer_timeout=INFER_TIMEOUT_S,
        )
        return CameraRunner(
            camera,
            defaults=self.defaults,
            turns=p.dispatcher,
            intake=StreamIntake(camera, self.reading),
            serving=serving,
            results=CameraResults(camera, p.node, topics, publish, events),
            states=InferenceStates(camera, p.node, topics, publish),
            taps=(self._shadow(camera, recording), recording),
        )

    def _shadow(self, camera: str, recording: Recording) -> ShadowRunner:
        p = self.pieces
        run = model_runner(p.backend.model, p.descriptions.get, INFER_TIMEOUT_S)
        topic = p.bus.topics.shadow(camera)

        def report(doc: ShadowReport) -> None:
            p.bus.publish(topic, doc)  # an OvbusError (broker away) is logged by the runner

        return ShadowRunner(camera, p.node, run, report, compared=recording.disagreement)
