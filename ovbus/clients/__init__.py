"""Typed clients of the services on the bus: requests and results are models
(``ovbus/payloads/``), errors are ``ovbus.errors`` with the service's code.

==================  ==========================================================================
``ZooClient``       models: catalog, list, pull, remove, set, rollback, rollout, quantize
``CameraClient``    cameras: announcements, states, ``set``, pipeline specs, zones, lines
``ReplayClient``    replays on the infer nodes, kept frames
``DatasetClient``   the dataset store on this box: summaries, export, labels, pruning
==================  ==========================================================================
"""

from ovbus.clients.camera import CameraClient
from ovbus.clients.dataset import DatasetClient
from ovbus.clients.replay import ReplayClient, ReplayRun
from ovbus.clients.zoo import ZooClient

__all__ = ["CameraClient", "DatasetClient", "ReplayClient", "ReplayRun", "ZooClient"]
