"""Tracked objects as events: ``new`` when a track is confirmed, ``update`` at once when its zones
change (else at most every ``update_interval_s`` while its box or score changed), ``crossed`` on
a line (:mod:`services.infer.lines`), ``end`` when the track ends; each object's best snapshot on
its own topic; the retained objects present now, re-published every :data:`OBJECTS_REFRESH_S`
while not empty (Home Assistant's presence sensors time out with ``off_delay`` if it stops).

:class:`Lifecycle` is the logic as plain functions of (frame, tracker step); :class:`ObjectEvents`
wires it to a :class:`~services.infer.tracking.Tracker`, the frame (for snapshots) and a publish
callback. Times are capture times, so the logic is the same live and in tests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from ovbus.frames import Frame
from ovbus.log import get_logger
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import (
    MAX_LISTED,
    OBJECTS_REFRESH_S,
    Direction,
    EventType,
    Line,
    ObjectEvent,
    ObjectsPresent,
    TrackedObject,
    TrackingSpec,
    Zone,
)
from ovbus.topics import Topic, Topics
from services.infer.annotate import encode_snapshot, snapshot_region
from services.infer.lines import LineCounter
from services.infer.tracking import Step, Tracker
from services.infer.zones import ZoneMembership, raw_zones

log = get_logger(__name__)

#: Without a processed frame for this long (camera disabled, stream down, models failing) every
#: tracked object ends: nothing confirms it is still there.
STALE_S: Final = OBJECTS_REFRESH_S


@dataclass(frozen=True, slots=True)
class FrameInfo:
    index: int
    captured_at: float
    width: int
    height: int


@dataclass(slots=True)
class _Life:
    """What is known of one confirmed track."""

    object: TrackedObject
    membership: ZoneMembership = field(default_factory=ZoneMembership)
    visited: list[str] = field(default_factory=list)
    seq: int = -1
    last_event_at: float = 0.0
    dirty: bool = False
    snapshot: str | None = None


@dataclass(slots=True)
class Outcome:
    events: list[ObjectEvent] = field(default_factory=list)
    #: ids whose best detection is this frame's (a snapshot crop is due)
    improved: list[str] = field(default_factory=list)
    objects: ObjectsPresent | None = None


class Lifecycle:
    """Events and the objects document from tracker steps (no I/O)."""

    def __init__(
        self,
        camera: str,
        node: str,
        spec: TrackingSpec,
        zones: list[Zone],
        lines: list[Line] | None = None,
    ) -> None:
        self.camera = camera
        self.node = node
        self.spec = spec
        self.zones = zones
        self.lines = LineCounter(list(lines or []))
        self.lives: dict[str, _Life] = {}
        self._last_doc: tuple[object, ...] | None = None
        self._last_doc_at = 0.0

    def step(self, info: FrameInfo, step: Step, ids: Callable[[int], str], dropped: int) -> Outcome:
        out = Outcome()
        for obs in step.tracks:
            oid = ids(obs.number)
            life = self.lives.get(oid)
            det = obs.detection
            if life is None:
                if det is None:
                    continue  # confirmed while coasting cannot happen; be safe
                life = self._create(oid, det, info, obs.first_at, obs.hits)
                out.improved.append(oid)
                entered, left = self._zones(life, det, info)
                self._emit(out, life, "new", entered, left, info)
                self._cross(out, life, det, info)
                continue
            if det is not None:
                improved = self._observe(life, det, info, obs.hits)
                if improved:
                    out.improved.append(oid)
                entered, left = self._zones(life, det, info)
                due = info.captured_at - life.last_event_at >= self.spec.update_interval_s
                if entered or left or (life.dirty and due):
                    self._emit(out, life, "update", entered, left, info)
                self._cross(out, life, det, info)
            else:
                life.membership.interrupt()  # coasting: not detected on this processed frame
        for number in step.ended:
            life = self.lives.pop(ids(number), None)
            self.lines.forget(ids(number))
            if life is not None:
                left = sorted(life.membership.current)
                life.object.zones = []
                self._emit(out, life, "end", [], left, info)
        out.objects = self._document(info, dropped)
        return out

    def refresh(self) -> None:
        """Send the objects document with the next step even if nothing changed."""
        self._last_doc = None

    def end_all(self, info: FrameInfo, dropped: int) -> Outcome:
        out = Outcome()
        for oid in sorted(self.lives):
            life = self.lives.pop(oid)
            self.lines.forget(oid)
            left = sorted(life.membership.current)
            life.object.zones = []
            self._emit(out, life, "end", [], left, info)
        out.objects = self._document(info, dropped, force=True)
        return out

    def _create(
        self, oid: str, det: DetectedObject, info: FrameInfo, first_at: float, hits: int
    ) -> _Life:
        obj = TrackedObject(
            id=oid,
            label=det.label,
            model=det.model,
            score=det.score,
            best_score=det.score,
            box=list(det.box),
            best_box=list(det.box),
            first_seen=first_at,
            last_seen=info.captured_at,
            frame=info.index,
            hits=hits,
        )
        life = _Life(obj)
        self.lives[oid] = life
        return life

    @staticmethod
    def _observe(life: _Life, det: DetectedObject, info: FrameInfo, hits: int) -> bool:
        obj = life.object
        life.dirty = life.dirty or obj.score != det.score or obj.box != list(det.box)  # changed
        obj.score = det.score
        obj.box = list(det.box)
        obj.last_seen = info.captured_at
        obj.frame = info.index
        obj.hits = hits
        if det.score > obj.best_score:
            obj.best_score = det.score
            obj.best_box = list(det.box)
            return True
        return False

    def _zones(
        self, life: _Life, det: DetectedObject, info: FrameInfo
    ) -> tuple[list[str], list[str]]:
        seen = raw_zones(det.box, det.label, info.width, info.height, self.zones)
        entered, left = life.membership.update(seen, self.zones)
        life.object.zones = sorted(life.membership.current)
        for name in entered:
            if name not in life.visited:
                life.visited.append(name)
        return entered, left

    def _cross(self, out: Outcome, life: _Life, det: DetectedObject, info: FrameInfo) -> None:
        hits = self.lines.observe(life.object.id, det.box, det.label, info.width, info.height)
        for name, direction in hits:
            self._emit(out, life, "crossed", [], [], info, line=name, direction=direction)

    def _emit(
        self,
        out: Outcome,
        life: _Life,
        kind: EventType,
        entered: list[str],
        left: list[str],
        info: FrameInfo,
        line: str | None = None,
        direction: Direction | None = None,
    ) -> None:
        life.seq += 1
        life.last_event_at = info.captured_at
        life.dirty = False
        out.events.append(
            ObjectEvent(
                type=kind,
                camera=self.camera,
                node=self.node,
                seq=life.seq,
                object=life.object.model_copy(),  # fields are replaced, never changed in place
                entered=entered,
                left=left,
                zones_visited=list(life.visited),
                line=line,
                direction=direction,
                snapshot=life.snapshot,
                published_at=time.time(),
            )
        )

    def _document(
        self, info: FrameInfo, dropped: int, force: bool = False
    ) -> ObjectsPresent | None:
        objects = [life.object for life in self.lives.values()]
        key = (tuple(sorted((o.id, tuple(o.zones)) for o in objects)), self.lines.key())
        stale = bool(objects) and info.captured_at - self._last_doc_at >= OBJECTS_REFRESH_S
        if not force and key == self._last_doc and not stale:
            return None
        self._last_doc, self._last_doc_at = key, info.captured_at
        zones: dict[str, dict[str, int]] = {z.name: {} for z in self.zones}
        for o in objects:
            for name in o.zones:
                zones[name][o.label] = zones[name].get(o.label, 0) + 1
        listed = sorted(objects, key=lambda o: o.score, reverse=True)[:MAX_LISTED]
        return ObjectsPresent(
            camera=self.camera,
            node=self.node,
            at=info.captured_at,
            objects=[o.model_copy() for o in listed],  # a snapshot: see _observe
            labels=dict(Counter(o.label for o in objects)),
            zones=zones,
            lines=self.lines.snapshot(),
            dropped=dropped,
        )


Publish = Callable[[Topic, BaseModel | bytes | None], None]


class ObjectEvents:
    """Tracking, events, snapshots and the objects document of one camera."""

    def __init__(self, camera: str, node: str, topics: Topics, publish: Publish) -> None:
        self.camera = camera
        self.node = node
        self.topics = topics
        self.publish = publish
        self._config: tuple[TrackingSpec, list[Zone], list[Line]] | None = None
        self._tracker: Tracker | None = None
        self._life: Lifecycle | None = None
        # each object's best crop since its last event, encoded only when an event carries it
        self._pending: dict[str, npt.NDArray[np.uint8]] = {}
        self._last_info = FrameInfo(0, 0.0, 1, 1)
        self._last_frame = time.monotonic()
        self._warned = False

    def configure(
        self, tracking: TrackingSpec, zones: list[Zone], lines: list[Line] | None = None
    ) -> None:
        """Apply a spec's tracking, zones and lines; a change ends every object and starts afresh
        (line counts from 0)."""
        config = (tracking, list(zones), list(lines or []))
        if self._config is not None and self._config == config:
            return
        self.close(clear=not tracking.enabled)
        self._config = config
        if tracking.enabled:
            self._tracker = Tracker(tracking)
            self._life = Lifecycle(self.camera, self.node, *config)

    def process(
        self, info: FrameInfo, objects: list[DetectedObject], image: npt.NDArray[np.uint8] | Frame
    ) -> None:
        last = self._last_info
        if (
            self._life is not None
            and self._life.lives
            and last.width > 1
            and ((last.width, last.height) != (info.width, info.height))
        ):  # boxes in other pixels: each object was tracked twice, old and new size
            self._afresh("frame size changed")
        tracker, life = self._tracker, self._life
        if tracker is None or life is None:
            return
        self._last_info = info
        self._last_frame = time.monotonic()
        step = tracker.update(objects, info.captured_at)
        dropped = tracker.dropped_detections + tracker.dropped_tracks
        if dropped and not self._warned:
            self._warned = True
            log.warning("tracker over max_tracks, dropping", camera=self.camera, dropped=dropped)
        out = life.step(info, step, tracker.object_id, dropped)
        if life.spec.snapshots:
            for oid in out.improved:
                crop = snapshot_region(image, life.lives[oid].object.best_box)
                if crop is not None:
                    self._pending[oid] = crop
        self._send(out)

    def close(self, *, clear: bool = False) -> None:
        """End every object (``end`` events, an empty objects document); ``clear`` also removes
        the retained objects document (the camera is gone or tracking is off)."""
        if self._tracker is not None and self._life is not None:
            dropped = self._tracker.dropped_detections + self._tracker.dropped_tracks
            self._tracker.end_all()
            self._send(self._life.end_all(self._last_info, dropped))
        self._tracker, self._life, self._config = None, None, None
        self._pending.clear()
        if clear:
            self.publish(self.topics.objects(self.camera), None)

    def expire(self, stale_s: float = STALE_S) -> None:
        """End every object when no frame was processed for ``stale_s`` seconds (the tracker
        starts afresh with the same settings; line counts go on)."""
        if self._life is None or not self._life.lives or self._config is None:
            return
        if time.monotonic() - self._last_frame >= stale_s:
            self._afresh("no frames")

    def _afresh(self, why: str) -> None:
        """Every object ends; the tracker starts afresh, same settings, line counts going on."""
        if self._life is None or self._config is None:
            return
        config, counts = self._config, self._life.lines.counts
        log.info(f"{why}, tracked objects end", camera=self.camera, objects=len(self._life.lives))
        self.close()
        self.configure(*config)
        if self._life is not None:
            self._life.lines.counts = counts

    def republish(self) -> None:
        """After a reconnect: the objects document again (with the next frame)."""
        if self._life is not None:
            self._life.refresh()

    def _send(self, out: Outcome) -> None:
        for event in out.events:
            oid = event.object.id
            crop = self._pending.pop(oid, None)
            jpeg = encode_snapshot(crop) if crop is not None else None
            if jpeg is not None and self._life is not None:
                topic = self.topics.object_snapshot(self.camera, oid)
                self.publish(topic, jpeg)
                event.snapshot = str(topic)
                life = self._life.lives.get(oid)
                if life is not None:
                    life.snapshot = str(topic)
            self.publish(self.topics.events(self.camera), event)
        if out.objects is not None:
            self.publish(self.topics.objects(self.camera), out.objects)

    @property
    def size(self) -> int:
        """Tracks and objects held (for the bounded-memory check)."""
        tracks = self._tracker.size if self._tracker is not None else 0
        lives = len(self._life.lives) if self._life is not None else 0
        return tracks + lives + len(self._pending)
