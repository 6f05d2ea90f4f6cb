"""A pull cut short by a crash must not stay ``pulling`` on the bus forever (found by the faults
suite, ``tests/faults/test_zoo_crash.py``): when the zoo connects, such a state of a model it
does not have becomes ``failed``."""

from __future__ import annotations

import pytest

from ovbus.bus import Bus
from ovbus.payloads.model import ModelState
from tests.infer.harness import wait_for
from tests.models import BLAZEFACE
from tests.zoo.conftest import Worker


@pytest.fixture
def stale(client: Bus) -> None:
    """What a zoo killed mid-pull leaves retained, published before the zoo (re)starts."""
    t = client.topics
    ghost = ModelState(name="ghost", state="pulling", progress=40.0, description=BLAZEFACE)
    client.publish(t.zoo_model("ghost"), ghost, wait=True)
    client.publish(t.zoo_model("done"), ModelState(name="done", state="failed"), wait=True)


def test_unfinished_states_of_absent_models_become_failed(
    stale: None, worker: Worker, client: Bus
) -> None:
    t = client.topics
    ghost = wait_for(
        client,
        str(t.zoo_model("ghost")),
        lambda m: s if m.payload and (s := m.decode(ModelState)).state == "failed" else None,
        10,
    )
    assert ghost.error is not None and "interrupted" in ghost.error.message
    assert ghost.description == BLAZEFACE
    done = client.retained(t.zoo_model("done"))[0].decode(ModelState)
    assert done.state == "failed" and done.error is None  # a finished state is left alone
