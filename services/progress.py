"""Follow a model's state (``zoo/models/<name>``) with a progress bar: the one loop that
``ovbus zoo pull`` and ``make demo`` share."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from ovbus.errors import BusTimeout, PayloadError
from ovbus.messages import Subscription
from ovbus.payloads.model import ModelState

#: States after which the bar is full (the download is over).
DOWNLOADED = frozenset({"verifying", "converting", "ready"})
#: States that end the following.
FINAL = frozenset({"ready", "failed"})


def percent(state: ModelState) -> float | None:
    """How full the bar is for ``state``; ``None`` keeps it where it was."""
    if state.state in DOWNLOADED:
        return 100.0
    if state.state == "pulling":
        return state.progress or 0.0
    return None


def follow_model(
    states: Subscription,
    name: str,
    console: Console,
    *,
    timeout: float,
    done: Callable[[], bool] = lambda: False,
    tick: Callable[[], None] = lambda: None,
    live_only: bool = False,
    poll: float = 0.5,
) -> ModelState | None:
    """Draw the states arriving on ``states`` (a subscription to ``zoo/models/<name>``) until
    one is final (``ready``/``failed``, returned), ``done()`` is true or ``timeout`` s passed
    (the last state seen, or ``None``, returned). ``tick`` runs between messages (it may raise
    to stop); ``live_only`` skips retained states (those of an earlier operation); a state
    that does not decode is skipped."""
    last: ModelState | None = None
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
        console=console,
    ) as bar:
        task = bar.add_task(name, total=100, state="waiting for the zoo")
        while not done() and (remaining := deadline - time.monotonic()) > 0:
            tick()
            try:
                message = states.get(timeout=min(poll, remaining))
            except BusTimeout:
                continue
            if message.empty or (live_only and message.retain):
                continue
            try:
                last = message.decode(ModelState)
            except PayloadError:
                continue
            bar.update(task, completed=percent(last), state=last.state)
            if last.state in FINAL:
                break
    return last
