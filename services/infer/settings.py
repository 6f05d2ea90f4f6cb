"""``ovbus infer`` settings (``OVBUS_INFER_*``); the flags are generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.errors import SchemaError
from ovbus.settings import WorkerSettings, split_list
from ovbus.topics import Topics


class InferSettings(WorkerSettings):
    """Infer worker settings; environment variables are ``OVBUS_INFER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_INFER_", extra="forbid")

    models: Path = Field(Path("models"), description="models folder in the OVMS layout")
    backend: Literal["openvino", "kserve", "tfs"] = Field(
        "openvino", description="openvino in-process, or a remote OVMS over kserve/tfs"
    )
    server: str | None = Field(None, description="model server host:port for kserve/tfs")
    default_model: str | None = Field(
        None, description="model run on cameras without a pipeline spec (default: none)"
    )
    default_threshold: float = Field(
        0.5, ge=0, le=1, description="score threshold of the default model"
    )
    hint: Literal["THROUGHPUT", "LATENCY"] = Field("THROUGHPUT", description="OpenVINO hint")
    model_cache: Path | None = Field(
        Path.home() / ".cache" / "ovbus" / "openvino",
        description="OpenVINO model cache (CACHE_DIR): a model compiled before loads from it "
        "in a fraction of the compile time (a swap, a restart); empty: no cache",
    )
    ha_discovery: bool = Field(
        True, description="publish Home Assistant MQTT discovery for owned cameras"
    )
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    frame_timeout: float = Field(10.0, gt=0, description="seconds without a frame = stalled")
    # the RTSP login (capture's --rtsp-users): from these settings, never from a descriptor
    rtsp_user: str | None = Field(None, description="RTSP user for cameras that ask for a login")
    rtsp_password: str | None = Field(
        None, description="RTSP password (prefer the OVBUS_INFER_RTSP_PASSWORD variable)"
    )
    rtsp_tls_ca: str | None = Field(
        None, description="CA file rtsps:// cameras are verified against (default: system CAs)"
    )
    # the scheduler and the threads (docs/infer.md, "The frame path")
    detect_fps: float | None = Field(
        None,
        gt=0,
        le=240,
        description="detections per second per camera unless its pipeline spec says "
        "(detect_fps); default: every frame the device can take, shared fairly",
    )
    inflight: int = Field(
        0,
        ge=0,
        le=64,
        description="detections in flight across all cameras; 0: what the device needs "
        "(OpenVINO's optimal number of requests + 1, 4 for a model server)",
    )
    infer_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="OpenVINO CPU inference threads (INFERENCE_NUM_THREADS) unless a model's "
        "plugin_config says; 0: OpenVINO's choice (every core)",
    )
    processes: int = Field(
        1,
        ge=0,
        le=64,
        description="infer processes on this machine, each a node of its own (<node id>-1 ... "
        "-N) taking its share of the cameras: for more cameras than one Python process holds "
        "(docs/infer.md); 0: one per core",
    )
    decoder_threads: int = Field(
        1,
        ge=0,
        le=64,
        description="threads per software H.264 decoder (avdec_h264 max-threads); 1: one per "
        "camera, the cameras share the cores; 0: one per core for every camera",
    )
    # replay (docs/rollout.md): the last seconds of each camera, JPEG-compressed, in memory
    replay_seconds: float = Field(
        30.0, ge=0, le=600, description="seconds of frames kept per camera for replay (0: off)"
    )
    replay_fps: float = Field(5.0, gt=0, le=60, description="frames/s kept per camera")
    replay_quality: int = Field(90, ge=30, le=100, description="JPEG quality of kept frames")
    replay_max_mb: float = Field(
        32.0, gt=0, le=4096, description="most memory the kept frames of one camera take, MB"
    )
    replay_min_free_mb: float = Field(
        256.0, ge=0, description="keep no frames while the system has less memory available, MB"
    )
    replay_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders (besides the models folder) whose video files may be replayed",
    )
    # datasets (docs/flywheel.md): frames collected by the cameras' dataset rules
    datasets: Path | None = Field(
        None,
        description="dataset store folder (frames collected by dataset rules); default: "
        "datasets/ beside the models folder",
    )
    replay_jobs: int = Field(1, ge=1, le=8, description="replays run at the same time")
    replay_max_frames: int = Field(3000, ge=1, le=100000, description="most frames one replay runs")

    _split = split_list("replay_dirs")

    @property
    def rtsp_login(self) -> tuple[str, str] | None:
        """(user, password) for RTSP servers that ask, or ``None``."""
        if self.rtsp_user is None or self.rtsp_password is None:
            return None
        return (self.rtsp_user, self.rtsp_password)

    @model_validator(mode="after")
    def _rtsp_login_whole(self) -> Self:
        if (self.rtsp_user is None) != (self.rtsp_password is None):
            raise ValueError("--rtsp-user and --rtsp-password go together")
        return self

    @field_validator("ha_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        try:
            Topics(value)  # no wildcards, no '/' at either end: discovery topics are built on it
        except SchemaError as e:
            raise ValueError(str(e)) from None
        return value

    @field_validator("model_cache", mode="before")
    @classmethod
    def _no_cache(cls, value: Any) -> Any:
        return None if value == "" else value
