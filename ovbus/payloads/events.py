"""Objects over time: zones and tracking settings of a pipeline spec, the ``new``/``update``/``end``
events of tracked objects, and the retained document of the objects present now.

Zones are polygons in normalised frame coordinates (``0..1`` of the width and height, so a zone
stays right when the camera's resolution changes). A zone is refused, with the reason, when it
has fewer than 3 or more than :data:`MAX_ZONE_POINTS` points, a point outside the frame, no area,
or edges that cross each other.

Lines are segments (two points, same coordinates) that tracked objects cross: side ``a`` of a
line is the one on the right of its arrow (first point to second) as the image is shown, so a line
drawn top to bottom has ``a`` on the left of the image and one drawn left to right has ``a`` below
it. A line is refused when it is shorter than :data:`MIN_LINE_LENGTH`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ovbus.payloads.base import Command, Epoch, Name, Payload, ShortText
from ovbus.payloads.detections import Box

MAX_ZONE_POINTS = 32
MAX_ZONES = 16
MAX_LINES = 16
#: Least length of a line (fraction of the frame).
MIN_LINE_LENGTH = 0.02
#: Objects listed in the objects document (counts always cover all).
MAX_LISTED = 200
#: While objects are present their document is re-published at least this often (s), so a
#: consumer's timeout (Home Assistant's ``off_delay``) turns presence off if it stops.
OBJECTS_REFRESH_S = 10.0

Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[
    list[Coordinate],
    Field(min_length=2, max_length=2, description="[x, y], fractions of the frame, 0..1"),
]
Point2 = tuple[float, float]


def in_frame(kind: str, data: Any) -> Any:
    """A zone's or line's points checked for the frame before their types are (``mode="before"``):
    a point outside ``0..1`` is "out of frame", naming the zone or line and the point (pydantic's
    own message named neither: ``zones.0.points.0.0: Input should be less than or equal to 1``);
    anything not shaped like points is left to the field's own validation."""
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        return data
    for i, point in enumerate(data["points"]):
        if not isinstance(point, list | tuple) or len(point) != 2:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in point) and not all(
            0.0 <= v <= 1.0 for v in point
        ):
            raise ValueError(
                f"{kind} {data.get('name')!r}: point {i} {list(point)} is out of frame: points "
                "are fractions of the frame's width and height, 0..1 (not pixels)"
            )
    return data


#: A track's event id: ``<run>-<n>`` (run: a random token per camera runner; n: 1, 2, ...).
ObjectId = Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}-[0-9]{1,12}$")]


def _cross(o: Point2, a: Point2, b: Point2) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(p: Point2, q: Point2, r: Point2) -> bool:
    return min(p[0], r[0]) <= q[0] <= max(p[0], r[0]) and min(p[1], r[1]) <= q[1] <= max(p[1], r[1])


def segments_cross(a: Point2, b: Point2, c: Point2, d: Point2) -> bool:
    """True if segment ``ab`` and segment ``cd`` share a point (touching counts)."""
    d1, d2 = _cross(c, d, a), _cross(c, d, b)
    d3, d4 = _cross(a, b, c), _cross(a, b, d)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and _on_segment(c, a, d))
        or (d2 == 0 and _on_segment(c, b, d))
        or (d3 == 0 and _on_segment(a, c, b))
        or (d4 == 0 and _on_segment(a, d, b))
    )


def polygon_area(points: list[Point2]) -> float:
    """Absolute area (shoelace)."""
    n = len(points)
    twice = sum(
        points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
        for i in range(n)
    )
    return abs(twice) / 2.0


def first_crossing(points: list[Point2]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges (by start index) that cross, or ``None``."""
    n = len(points)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            a, b = points[i], points[(i + 1) % n]
            c, d = points[j], points[(j + 1) % n]
            if segments_cross(a, b, c, d):
                return i, j
    return None


class Zone(Command):
    """A named polygon of the frame; an object is in it while its anchor point is inside."""

    name: Name
    points: list[Point] = Field(
        min_length=3,
        max_length=MAX_ZONE_POINTS,
        description="polygon corners, [x, y] as fractions of the frame (0..1), in order",
    )
    labels: list[ShortText] | None = Field(
        None, max_length=100, description="only these labels count in the zone; default: all"
    )
    anchor: Literal["bottom", "center"] = Field(
        "bottom",
        description="point of the box tested: bottom centre (feet on the floor) or its centre",
    )
    inertia: int = Field(
        2, ge=1, le=30, description="processed frames in a row in (out) before entered (left)"
    )

    @model_validator(mode="before")
    @classmethod
    def _in_frame(cls, data: Any) -> Any:
        return in_frame("zone", data)

    @model_validator(mode="after")
    def _simple_polygon(self) -> Zone:
        pts = [(float(p[0]), float(p[1])) for p in self.points]
        crossing = first_crossing(pts)
        if crossing is not None:
            i, j = crossing
            n = len(pts)
            raise ValueError(
                f"zone {self.name!r} is self-intersecting: edge {i}-{(i + 1) % n} crosses "
                f"edge {j}-{(j + 1) % n}; list the corners in order around the zone"
            )
        if polygon_area(pts) < 1e-6:
            raise ValueError(f"zone {self.name!r} has no area (its points are on one line)")
        return self


Direction = Literal["a->b", "b->a"]
DIRECTIONS: tuple[Direction, Direction] = ("a->b", "b->a")


class Line(Command):
    """A named segment of the frame; a tracked object crosses it when its anchor point goes from
    one side to the other through the segment (past the hysteresis band on both sides)."""

    name: Name
    points: list[Point] = Field(
        min_length=2,
        max_length=2,
        description="its two ends, [x, y] as fractions of the frame (0..1); side a is on the right "
        "of the arrow from the first to the second as the image is shown (drawn top to bottom: "
        "a is the left of the image; drawn left to right: a is below the line)",
    )
    count: Literal["both", "a->b", "b->a"] = Field(
        "both", description="which crossings count (and are published): both directions or one"
    )
    labels: list[ShortText] | None = Field(
        None, max_length=100, description="only these labels count; default: all"
    )
    anchor: Literal["bottom", "center"] = Field(
        "bottom",
        description="point of the box that crosses: bottom centre (feet on the floor) or centre",
    )
    hysteresis: float = Field(
        0.02,
        ge=0.0,
        le=0.25,
        description="distance from the line (fraction of the frame) the point must be on a side "
        "to be on it: a point that only touches the line, or jitters on it, crosses nothing",
    )

    @model_validator(mode="before")
    @classmethod
    def _in_frame(cls, data: Any) -> Any:
        return in_frame("line", data)

    @model_validator(mode="after")
    def _long_enough(self) -> Line:
        (ax, ay), (bx, by) = self.points
        if ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5 < MIN_LINE_LENGTH:
            raise ValueError(
                f"line {self.name!r} is shorter than {MIN_LINE_LENGTH} of the frame; "
                "give two distinct ends"
            )
        return self

    def directions(self) -> list[Direction]:
        """The directions counted."""
        return list(DIRECTIONS) if self.count == "both" else [self.count]


class TrackingSpec(Command):
    """How detections become tracked objects and events (per camera)."""

    enabled: bool = Field(True, description="track objects and publish events and objects")
    hits: int = Field(2, ge=1, le=30, description="detections in a row that confirm a track")
    misses: int = Field(
        10, ge=1, le=300, description="processed frames without a match that end a track"
    )
    min_iou: float = Field(
        0.1, gt=0.0, lt=1.0, description="least overlap with a track's predicted box to match it"
    )
    max_tracks: int = Field(
        64, ge=1, le=1024, description="tracks kept per camera; more are dropped and counted"
    )
    update_interval_s: float = Field(
        5.0, ge=0.2, le=3600, description="least time between two updates of an object"
    )
    snapshots: bool = Field(True, description="publish each object's best snapshot (JPEG)")

    @model_validator(mode="after")
    def _misses_above_hits(self) -> TrackingSpec:
        # norfair's hit counter saturates at misses - 1 and confirms above hits - 1
        if self.misses <= self.hits:
            raise ValueError(f"misses ({self.misses}) must be greater than hits ({self.hits})")
        return self


EventType = Literal["new", "update", "end", "crossed"]


class TrackedObject(Payload):
    """One tracked object as events and the objects document show it."""

    id: ObjectId = Field(description="unique per camera runner; also the snapshot topic level")
    label: ShortText
    model: Name | None = None
    score: float = Field(ge=0.0, le=1.0, description="score of the last detection")
    best_score: float = Field(ge=0.0, le=1.0)
    box: Box
    best_box: Box = Field(description="box of the best detection (the snapshot)")
    first_seen: Epoch = Field(description="capture time of the first detection of the track")
    last_seen: Epoch = Field(description="capture time of the last matched detection")
    frame: int = Field(ge=0, description="reader frame counter of last_seen")
    hits: int = Field(ge=1, description="detections matched to this track")
    zones: list[Name] = Field(default_factory=list, description="zones it is in now")


class ObjectEvent(Payload):
    """A tracked object appeared (``new``), changed (``update``), crossed a line (``crossed``,
    with ``line`` and ``direction``) or is gone (``end``); on ``cameras/<cam>/events``.
    ``entered``/``left`` list the zones changed since its previous event (an update is sent at
    once when its zones change, otherwise at most every ``update_interval_s``)."""

    doc_title = "Object event"

    type: EventType = Field(description="new, update, crossed or end")
    camera: Name
    node: Name
    seq: int = Field(ge=0, description="0 for new, then +1 per event of this object")
    object: TrackedObject
    entered: list[Name] = Field(default_factory=list, description="zones entered on this event")
    left: list[Name] = Field(default_factory=list, description="zones left on this event")
    zones_visited: list[Name] = Field(default_factory=list, description="every zone so far")
    line: Name | None = Field(None, description="the line crossed (crossed events)")
    direction: Direction | None = Field(
        None, description="a->b or b->a (crossed events; docs/tracking.md#lines)"
    )
    snapshot: ShortText | None = Field(
        None, description="topic of its best snapshot, once one was published"
    )
    published_at: Epoch


class ObjectsPresent(Payload):
    """The objects present now on a camera; retained on ``cameras/<cam>/objects``."""

    doc_title = "Objects present"

    camera: Name
    node: Name
    at: Epoch
    objects: list[TrackedObject] = Field(
        default_factory=list, max_length=MAX_LISTED, description="at most 200 (best scores first)"
    )
    labels: dict[ShortText, int] = Field(default_factory=dict, description="count per label")
    zones: dict[Name, dict[ShortText, int]] = Field(
        default_factory=dict, description="count per label in each zone (every zone listed)"
    )
    lines: dict[Name, dict[Direction, int]] = Field(
        default_factory=dict,
        description="crossings per line and counted direction since the tracker started (every "
        "line listed; back to 0 when the worker restarts or the tracking, zones or lines change)",
    )
    dropped: int = Field(
        0, ge=0, description="detections and tracks dropped over max_tracks since the start"
    )
