"""Lines of a camera: which tracked objects cross them, in which direction, and the counts.

The point tested is the box's anchor (bottom centre or centre, as for zones) in normalised frame
coordinates. Its side of a line is the sign of its distance from the line's infinite extension;
within ``hysteresis`` of the line it is on no side (the band). An object is on a side once its
point is past the band there; a crossing is counted when the point reaches the other side past
the band and the step from its last point on the old side to this one goes through the segment
(not around its ends). So a track that only touches the line, or jitters on it, counts nothing,
and one that crosses counts once per crossing. Plain functions and one small class, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ovbus.payloads.events import Direction, Line, Point2, segments_cross
from services.infer.zones import BoxPx, anchor_point


def signed_distance(point: Point2, line: Line) -> float:
    """Distance of ``point`` from the line through ``line``'s ends; positive on side ``a``."""
    (ax, ay), (bx, by) = line.points
    dx, dy = bx - ax, by - ay
    length = math.hypot(dx, dy)
    return float((dx * (point[1] - ay) - dy * (point[0] - ax)) / length)


def side(point: Point2, line: Line) -> int:
    """``1`` on side a, ``-1`` on side b, ``0`` within the hysteresis band."""
    d = signed_distance(point, line)
    if d > line.hysteresis:
        return 1
    if d < -line.hysteresis:
        return -1
    return 0


@dataclass(slots=True)
class LineSide:
    """One object's side of one line, and its last point on that side."""

    side: int = 0
    last: Point2 | None = None

    def update(self, point: Point2, line: Line) -> Direction | None:
        """The direction crossed with this point, if it crossed."""
        now = side(point, line)
        if now == 0:
            return None
        was, last = self.side, self.last
        self.side, self.last = now, point
        if was in (0, now) or last is None:
            return None
        a, b = line.points
        if not segments_cross(last, point, (a[0], a[1]), (b[0], b[1])):
            return None  # went around an end of the segment
        return "a->b" if was == 1 else "b->a"


@dataclass(slots=True)
class LineCounter:
    """Every object's side of every line of a camera, and the crossings counted per line and
    direction (only the directions each line counts)."""

    lines: list[Line]
    counts: dict[str, dict[Direction, int]] = field(default_factory=dict)
    _sides: dict[str, dict[str, LineSide]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {ln.name: dict.fromkeys(ln.directions(), 0) for ln in self.lines}

    def observe(
        self, oid: str, box: BoxPx, label: str, width: int, height: int
    ) -> list[tuple[str, Direction]]:
        """This object's crossings on this detection (line name, direction), counted."""
        crossed: list[tuple[str, Direction]] = []
        sides = self._sides.setdefault(oid, {})
        for line in self.lines:
            if line.labels is not None and label not in line.labels:
                continue
            point = anchor_point(box, line.anchor, width, height)
            direction = sides.setdefault(line.name, LineSide()).update(point, line)
            if direction is not None and direction in self.counts[line.name]:
                self.counts[line.name][direction] += 1
                crossed.append((line.name, direction))
        return crossed

    def forget(self, oid: str) -> None:
        """The object ended."""
        self._sides.pop(oid, None)

    def snapshot(self) -> dict[str, dict[Direction, int]]:
        return {name: dict(per) for name, per in self.counts.items()}

    def key(self) -> tuple[tuple[str, tuple[tuple[str, int], ...]], ...]:
        """What changes when a count changes (the objects document is re-sent)."""
        return tuple((name, tuple(sorted(per.items()))) for name, per in self.counts.items())


def crossings(points: Sequence[Point2], line: Line) -> list[Direction]:
    """The counted crossings of one path of anchor points (normalised) over ``line``."""
    state = LineSide()
    out: list[Direction] = []
    for p in points:
        d = state.update(p, line)
        if d is not None and d in line.directions():
            out.append(d)
    return out
