"""The zoo from the requester's side: typed requests on ``zoo/request``, typed results, and the
retained model states that follow a pull, a quantization or a rollout::

    from ovbus.clients import ZooClient
    from ovbus.payloads.zoo import PullRequest, RolloutRequest

    zoo = ZooClient(bus)
    pulled = zoo.send(PullRequest(name="blazeface", serve=False))    # a PullResult
    started = zoo.send(RolloutRequest(name="blazeface", share=0.5))  # a RolloutStarted
    outcome = zoo.wait_rollout("blazeface", timeout=600)              # promoted / rolled_back

Every request model names its result model (``PullRequest.result`` is ``PullResult``), so
:meth:`ZooClient.send` returns the right type for any action, including one added later. The
``ovbus zoo`` command, the notebooks, the benchmarks and the demo go through this client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import overload

from ovbus.bus import Bus
from ovbus.clients.base import ServiceClient
from ovbus.errors import BusTimeout, PayloadError
from ovbus.messages import Subscription
from ovbus.payloads.model import ModelState
from ovbus.payloads.rollout import RolloutStatus
from ovbus.payloads.zoo import (
    CatalogRequest,
    ListRequest,
    PullRequest,
    QuantizeRequest,
    RemoveRequest,
    RollbackRequest,
    RolloutRequest,
    SetRequest,
    ZooAction,
)
from ovbus.payloads.zoo_results import (
    CatalogResult,
    ListResult,
    PullResult,
    QuantizeResult,
    RemoveResult,
    RollbackResult,
    RolloutStarted,
    SetResult,
    ZooResult,
)

#: the phases a rollout ends in
FINAL = ("promoted", "rolled_back")


class ZooClient(ServiceClient):
    """Requests to the zoo worker(s) on this bus. ``timeout`` is the default wait for a reply
    (a pull or a quantization answers when it is done: minutes)."""

    def __init__(self, bus: Bus, *, timeout: float = 600.0) -> None:
        super().__init__(bus, timeout=timeout)

    # one request, any action ----------------------------------------------------------------
    @overload
    def send(self, request: CatalogRequest, *, timeout: float | None = None) -> CatalogResult: ...
    @overload
    def send(self, request: ListRequest, *, timeout: float | None = None) -> ListResult: ...
    @overload
    def send(self, request: PullRequest, *, timeout: float | None = None) -> PullResult: ...
    @overload
    def send(self, request: RemoveRequest, *, timeout: float | None = None) -> RemoveResult: ...
    @overload
    def send(self, request: SetRequest, *, timeout: float | None = None) -> SetResult: ...
    @overload
    def send(self, request: RollbackRequest, *, timeout: float | None = None) -> RollbackResult: ...
    @overload
    def send(self, request: RolloutRequest, *, timeout: float | None = None) -> RolloutStarted: ...
    @overload
    def send(self, request: QuantizeRequest, *, timeout: float | None = None) -> QuantizeResult: ...
    @overload
    def send(self, request: ZooAction, *, timeout: float | None = None) -> ZooResult: ...
    def send(self, request: ZooAction, *, timeout: float | None = None) -> ZooResult:
        """Send ``request`` and return its result model; ``RemoteError`` with the zoo's code
        when it refuses, ``BusTimeout`` when no zoo answers within ``timeout`` s."""
        return self._call(self.bus.topics.zoo_request(), request, request.result, timeout=timeout)

    # the actions, by name -------------------------------------------------------------------
    def catalog(self, *, timeout: float = 30.0) -> CatalogResult:
        return self.send(CatalogRequest(), timeout=timeout)

    def listing(self, *, timeout: float = 30.0) -> ListResult:
        return self.send(ListRequest(), timeout=timeout)

    def pull(self, request: PullRequest | str, *, timeout: float | None = None) -> PullResult:
        """A pull (a ``str``: the catalog entry of that name)."""
        if isinstance(request, str):
            request = PullRequest(name=request)
        return self.send(request, timeout=timeout)

    def remove(self, request: RemoveRequest | str, *, timeout: float = 60.0) -> RemoveResult:
        if isinstance(request, str):
            request = RemoveRequest(name=request)
        return self.send(request, timeout=timeout)

    def set(self, request: SetRequest, *, timeout: float = 60.0) -> SetResult:
        return self.send(request, timeout=timeout)

    def rollback(self, name: str, *, timeout: float = 60.0) -> RollbackResult:
        return self.send(RollbackRequest(name=name), timeout=timeout)

    def rollout(self, request: RolloutRequest, *, timeout: float = 60.0) -> RolloutStarted:
        """Start a rollout; :meth:`wait_rollout` follows it to its outcome."""
        return self.send(request, timeout=timeout)

    def quantize(self, request: QuantizeRequest, *, timeout: float | None = None) -> QuantizeResult:
        return self.send(request, timeout=timeout)

    # the retained model states --------------------------------------------------------------
    def state(self, name: str, *, timeout: float = 5.0) -> ModelState | None:
        """The model's retained state, or ``None`` when the zoo has published none."""
        for message in self.bus.retained(self.bus.topics.zoo_model(name), timeout=timeout):
            return message.decode(ModelState)
        return None

    def follow(self, name: str, *, idle_timeout: float | None = 0.5) -> Subscription:
        """The model's states as they change (subscribe before sending, to miss none)."""
        return self.bus.subscribe(self.bus.topics.zoo_model(name), idle_timeout=idle_timeout)

    def wait_rollout(
        self,
        name: str,
        *,
        timeout: float,
        states: Subscription | None = None,
        on_status: Callable[[RolloutStatus], None] | None = None,
    ) -> RolloutStatus | None:
        """Follow the model's rollout until it is promoted or rolled back; returns its final
        status, or ``None`` after ``timeout`` s. ``on_status`` sees each status as it comes.
        Give ``states`` (from :meth:`follow`, made before the request) to miss no change."""
        own = states is None
        sub = self.follow(name) if states is None else states
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    message = sub.get(timeout=min(1.0, remaining))
                except BusTimeout:
                    continue
                if message.empty or message.retain:  # a retained one may be an older rollout's
                    continue
                try:
                    status = message.decode(ModelState).rollout
                except PayloadError:
                    continue
                if status is None:
                    continue
                if on_status is not None:
                    on_status(status)
                if status.phase in FINAL:
                    return status
            return None
        finally:
            if own:
                sub.close()
