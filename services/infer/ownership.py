"""Which infer worker owns which camera: rendezvous (highest random weight) hashing over the
infer workers whose retained status is ``online``. No coordinator: every worker sees the same
status/birth topics and computes the same answer; a worker's last will (``offline``) moves its
cameras to the others."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable


def weight(node: str, camera: str) -> int:
    digest = hashlib.blake2b(f"{node}\x00{camera}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(camera: str, nodes: Iterable[str]) -> str | None:
    """The node with the highest weight for ``camera`` (ties broken by name)."""
    best: tuple[int, str] | None = None
    for node in nodes:
        key = (weight(node, camera), node)
        if best is None or key > best:
            best = key
    return None if best is None else best[1]


class Membership:
    """Live infer workers, from ``nodes/+/status`` and ``nodes/+/birth``."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._lock = threading.Lock()
        self._online: set[str] = set()
        self._kinds: dict[str, str] = {}

    def status(self, node: str, online: bool) -> bool:
        """Record a status; True if the set of live infer workers changed."""
        with self._lock:
            before = self._live()
            (self._online.add if online else self._online.discard)(node)
            return self._live() != before

    def birth(self, node: str, kind: str | None) -> bool:
        with self._lock:
            before = self._live()
            if kind is None:
                self._kinds.pop(node, None)
            else:
                self._kinds[node] = kind
            return self._live() != before

    def _live(self) -> frozenset[str]:
        live = {n for n in self._online if self._kinds.get(n) == "infer"}
        live.add(self.me)
        return frozenset(live)

    def live(self) -> frozenset[str]:
        with self._lock:
            return self._live()

    def owns(self, camera: str) -> bool:
        return owner(camera, self.live()) == self.me
