"""ovbus: edge computer vision on an MQTT bus with OpenVINO. This package is the client library
that the workers, the notebooks and third parties share."""

__version__ = "0.1.0"

from ovbus.bus import Bus, connect
from ovbus.errors import OvbusError
from ovbus.rpc import serve
from ovbus.topics import Topic, Topics, Wildcard

__all__ = ["Bus", "OvbusError", "Topic", "Topics", "Wildcard", "__version__", "connect", "serve"]
