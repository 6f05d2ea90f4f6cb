"""Zones of a camera: which zones a box is in, with inertia (frames in a row before an object
counts as entered or left, so a box that jitters on an edge does not flap). Plain functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ovbus.payloads.events import Zone

BoxPx = Sequence[float]


def anchor_point(box: BoxPx, anchor: str, width: int, height: int) -> tuple[float, float]:
    """The box's anchor (``bottom`` centre or ``center``) in normalised frame coordinates."""
    x1, y1, x2, y2 = box
    x = (x1 + x2) / 2.0
    y = y2 if anchor == "bottom" else (y1 + y2) / 2.0
    return x / width, y / height


#: How close to an edge a point is on it (normalised coordinates: a millionth of the frame).
ON_EDGE: float = 1e-6


def _on_segment(x: float, y: float, a: Sequence[float], b: Sequence[float]) -> bool:
    (xa, ya), (xb, yb) = (a[0], a[1]), (b[0], b[1])
    if not (min(xa, xb) - ON_EDGE <= x <= max(xa, xb) + ON_EDGE):
        return False
    if not (min(ya, yb) - ON_EDGE <= y <= max(ya, yb) + ON_EDGE):
        return False
    length = max(abs(xb - xa), abs(yb - ya), ON_EDGE)
    return abs((xb - xa) * (y - ya) - (yb - ya) * (x - xa)) <= ON_EDGE * length


def inside(point: tuple[float, float], polygon: Sequence[Sequence[float]]) -> bool:
    """Even-odd rule (ray casting to the right); a point on any edge is inside. (Half-open
    before: the right and bottom edges were out, and a box cut by the frame's bottom, its anchor
    at y = 1.0, was in no zone, not even one covering the whole frame.)"""
    x, y = point
    n = len(polygon)
    if any(_on_segment(x, y, polygon[i - 1], polygon[i]) for i in range(n)):
        return True
    result = False
    for i in range(n):
        xi, yi = polygon[i][0], polygon[i][1]
        xj, yj = polygon[i - 1][0], polygon[i - 1][1]
        if (yi > y) != (yj > y):
            cross_x = xi + (y - yi) * (xj - xi) / (yj - yi)
            if x < cross_x:
                result = not result
    return result


def raw_zones(box: BoxPx, label: str, width: int, height: int, zones: Sequence[Zone]) -> set[str]:
    """The zones whose polygon holds the box's anchor this frame (labels filter applied)."""
    out: set[str] = set()
    for zone in zones:
        if zone.labels is not None and label not in zone.labels:
            continue
        if inside(anchor_point(box, zone.anchor, width, height), zone.points):
            out.add(zone.name)
    return out


@dataclass(slots=True)
class ZoneMembership:
    """One object's zones with inertia: ``update`` returns (entered, left) this frame."""

    current: set[str] = field(default_factory=set)
    _streak: dict[str, int] = field(default_factory=dict)

    def interrupt(self) -> None:
        """A processed frame that did not detect the object: a row of frames inside (outside)
        starts again (``inertia`` counted detections, not frames in a row)."""
        self._streak.clear()

    def update(self, seen: set[str], zones: Sequence[Zone]) -> tuple[list[str], list[str]]:
        entered: list[str] = []
        left: list[str] = []
        for zone in zones:
            name = zone.name
            differs = (name in seen) != (name in self.current)
            streak = self._streak.get(name, 0) + 1 if differs else 0
            if differs and streak >= zone.inertia:
                if name in seen:
                    self.current.add(name)
                    entered.append(name)
                else:
                    self.current.discard(name)
                    left.append(name)
                streak = 0
            self._streak[name] = streak
        return entered, left
