"""Typed, versioned payload models for every message of the topic tree."""

from ovbus.payloads.base import SCHEMA_VERSION, Command, ErrorInfo, Payload
from ovbus.payloads.detections import ClassScore, DetectedObject, DetectionResult, ModelResult
from ovbus.payloads.model import ModelDescription, ModelState
from ovbus.payloads.node import Birth, CameraStats, Stats
from ovbus.payloads.pipeline import InferenceState, ModelStatus, PipelineModel, PipelineSpec
from ovbus.payloads.rpc import Reply, Request
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from ovbus.payloads.zoo import (
    CatalogRequest,
    ListRequest,
    PullRequest,
    RemoveRequest,
    RollbackRequest,
    SetRequest,
    ZooRequest,
    ZooRequestAdapter,
)

__all__ = [
    "SCHEMA_VERSION",
    "Birth",
    "CameraSet",
    "CameraState",
    "CameraStats",
    "CatalogRequest",
    "ClassScore",
    "Command",
    "DetectedObject",
    "DetectionResult",
    "ErrorInfo",
    "InferenceState",
    "ListRequest",
    "ModelDescription",
    "ModelResult",
    "ModelState",
    "ModelStatus",
    "Payload",
    "PipelineModel",
    "PipelineSpec",
    "PullRequest",
    "RemoveRequest",
    "Reply",
    "Request",
    "RollbackRequest",
    "SetRequest",
    "Stats",
    "StreamDescriptor",
    "ZooRequest",
    "ZooRequestAdapter",
]
