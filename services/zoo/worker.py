"""The zoo worker: a node on the bus that turns ``zoo/request`` commands into files under the
models folder and entries of OVMS's ``config.json``, and keeps ``zoo/models/<name>`` retained."""

from __future__ import annotations

import threading

from ovbus.errors import OvbusError
from ovbus.log import get_logger
from ovbus.node import Node
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth
from ovbus.settings import NodeSettings
from services.zoo.cli import ZooSettings
from services.zoo.dispatch import Dispatcher
from services.zoo.service import Zoo

log = get_logger(__name__)


def start(node: Node, settings: ZooSettings) -> tuple[Zoo, Dispatcher]:
    """Wire a zoo onto a node (not yet connected): states, request dispatch, default pull."""
    zoo = Zoo(settings)

    def publish(state: ModelState) -> None:
        node.bus.publish(node.topics.zoo_model(state.name), state)

    zoo.board.publish = publish
    dispatcher = Dispatcher(node.bus, zoo, jobs=settings.jobs)
    dispatcher.start()
    node.bus.on_connect(zoo.board.republish)
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
