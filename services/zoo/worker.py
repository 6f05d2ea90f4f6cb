"""The zoo worker: a node on the bus that turns ``zoo/request`` commands into files under the
models folder and entries of OVMS's ``config.json``, and keeps ``zoo/models/<name>`` retained."""

from __future__ import annotations

import threading
from typing import Final

from ovbus.errors import ErrorCode, OvbusError, PayloadError, StoreError
from ovbus.log import get_logger
from ovbus.node import Node
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth
from ovbus.settings import NodeSettings
from services.zoo.dispatch import Dispatcher
from services.zoo.service import Zoo
from services.zoo.settings import ZooSettings

log = get_logger(__name__)

#: States a model is left in on the bus when the zoo stops in the middle of an operation.
UNFINISHED: Final = frozenset({"pulling", "verifying", "converting"})


def settle_interrupted(node: Node, zoo: Zoo) -> None:
    """After a connect: a pull cut short by a crash left its last retained state (``pulling``,
    ...) on the bus. Such a state of a model this zoo neither has nor is working on becomes
    ``failed`` (a model it has is re-published ``ready`` by ``StateBoard.republish``)."""
    managed = set(zoo.board.managed())
    for message in node.bus.retained(node.topics.all_zoo_models()):
        try:
            state = message.decode(ModelState)
        except PayloadError:
            continue
        if state.state not in UNFINISHED or state.name in managed or zoo.busy(state.name):
            continue
        log.warning("interrupted operation found", model=state.name, state=state.state)
        error = StoreError(
            f"{state.state} of {state.name!r} was interrupted (the zoo stopped); pull it again",
            code=ErrorCode.INTERNAL,
        )
        zoo.board.set_state(state.name, "failed", error=error, description=state.description)


def start(node: Node, settings: ZooSettings) -> tuple[Zoo, Dispatcher]:
    """Wire a zoo onto a node (not yet connected): states, request dispatch, default pull."""
    zoo = Zoo(settings)

    def publish(state: ModelState) -> None:
        node.bus.publish(node.topics.zoo_model(state.name), state)

    zoo.board.publish = publish
    dispatcher = Dispatcher(node.bus, zoo, jobs=settings.jobs)
    dispatcher.start()
    node.bus.on_connect(zoo.board.republish)
    node.bus.on_connect(lambda: settle_interrupted(node, zoo))
    return zoo, dispatcher


def main(node_settings: NodeSettings, settings: ZooSettings) -> int:
    holder: dict[str, Zoo] = {}

    def describe(birth: Birth) -> Birth:
        zoo = holder.get("zoo")
        models = zoo.board.managed() if zoo is not None else []
        return birth.model_copy(update={"models": models[:1000]})

    node = Node(node_settings, "zoo", persistent=True, describe=describe)
    try:
        zoo, dispatcher = start(node, settings)
    except OvbusError as e:
        log.error("zoo cannot start", error=e.message, models=str(settings.models))
        return 2
    holder["zoo"] = zoo
    zoo.on_change = node.publish_birth
    node.install_signal_handlers()
    try:
        node.connect()
    except OvbusError as e:
        log.error("cannot reach the broker", error=e.message)
        dispatcher.close()
        return 1
    log.info("zoo ready", models=str(zoo.folder.root), managed=len(zoo.board.managed()))
    if settings.pull_default:
        threading.Thread(target=zoo.pull_default, name="pull-default", daemon=True).start()
    node.run_until_stopped(on_stop=dispatcher.close)
    return 0
