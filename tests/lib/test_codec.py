"""Payload models and the JSON/MessagePack codec: round trips and specific refusals."""

from __future__ import annotations

import json

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovbus import codec
from ovbus.errors import DecodeError, ErrorCode, SchemaError, StreamError, TooLarge, VersionError
from ovbus.payloads import (
    CameraSet,
    DetectedObject,
    DetectionResult,
    ModelResult,
    PipelineSpec,
    PullRequest,
    Reply,
    StreamDescriptor,
    ZooRequestAdapter,
)
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.zoo import WheelSource


def sample_result() -> DetectionResult:
    return DetectionResult(
        camera="door",
        node="infer-1",
        frame=7,
        width=640,
        height=480,
        captured_at=1_700_000_000.125,
        captured_clock="rtcp-ntp",
        published_at=1_700_000_000.2,
        models=[
            ModelResult(
                name="face",
                version=2,
                device="CPU",
                backend="openvino",
                inference_ms=3.5,
                objects=[
                    DetectedObject(label="face", score=0.93, box=[10, 20, 110, 140], model="face")
                ],
            )
        ],
    )


@pytest.mark.parametrize("content_type", [codec.JSON, codec.MSGPACK])
def test_round_trip(content_type: str) -> None:
    result = sample_result()
    data = codec.encode(result, content_type)
    back = codec.decode(data, DetectionResult, content_type)
    assert back == result
    assert back.objects[0].box == [10, 20, 110, 140]
    assert back.age_ms == pytest.approx(75.0)


def test_msgpack_is_smaller_than_json() -> None:
    result = sample_result()
    assert len(codec.encode(result, codec.MSGPACK)) < len(codec.encode(result, codec.JSON))


def test_content_type_sniffed_without_property() -> None:
    result = sample_result()
    assert codec.decode(codec.encode(result, codec.MSGPACK), DetectionResult, None) == result
    assert codec.decode(codec.encode(result, codec.JSON), DetectionResult, None) == result


def test_union_round_trip_both_codecs() -> None:
    req = PullRequest(
        name="face", source=WheelSource(package="mediapipe", version="0.10.21", member="a/b.tflite")
    )
    for ct in (codec.JSON, codec.MSGPACK):
        back = codec.decode(codec.encode(req, ct), ZooRequestAdapter, ct)
        assert back == req


@pytest.mark.parametrize(
    ("data", "ct", "error", "fragment"),
    [
        (b"{not json", codec.JSON, DecodeError, "not valid JSON"),
        (b"\xc1\xc1", codec.MSGPACK, DecodeError, "not valid MessagePack"),
        (b"", codec.JSON, DecodeError, "empty"),
        (b"[1,2]", codec.JSON, SchemaError, "must be an object"),
        (b'{"fps": 5}', codec.JSON, VersionError, "no schema version"),
        (b'{"v": 2, "fps": 5}', codec.JSON, VersionError, "version 2"),
        (b'{"v": "1", "fps": 5}', codec.JSON, VersionError, "'1'"),
        (b'{"v": true, "fps": 5}', codec.JSON, VersionError, "True"),
        (b'{"v": 1, "fps": "fast"}', codec.JSON, SchemaError, "fps"),
        (b'{"v": 1, "fps": 5, "colour": "red"}', codec.JSON, SchemaError, "colour"),
        (b'{"v": 1}', codec.JSON, SchemaError, "nothing to change"),
        (b'{"v": 1, "width": 640}', codec.JSON, SchemaError, "together"),
        (b'{"v": 1, "fps": -1}', codec.JSON, SchemaError, "fps"),
        (b'{"v": 1, "fps": 5}', "text/plain", DecodeError, "content type"),
    ],
)
def test_malformed_payloads_rejected_with_specific_errors(
    data: bytes, ct: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        codec.decode(data, CameraSet, ct)
    assert fragment in str(info.value)


def test_strict_types_no_coercion() -> None:
    with pytest.raises(SchemaError):
        codec.decode(b'{"v": 1, "enabled": "yes"}', CameraSet, codec.JSON)
    with pytest.raises(SchemaError):
        codec.decode(msgpack.packb({"v": 1, "enabled": "yes"}), CameraSet, codec.MSGPACK)
    assert codec.decode(b'{"v": 1, "fps": 5}', CameraSet).fps == 5.0


def test_oversized_payload_refused() -> None:
    data = json.dumps({"v": 1, "fps": 5, "pad": "x" * 5000}).encode()
    with pytest.raises(TooLarge) as info:
        codec.decode(data, CameraSet, codec.JSON, max_bytes=1024)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_deep_nesting_refused() -> None:
    data = b'{"v": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    with pytest.raises((DecodeError, SchemaError)):
        codec.decode(data, CameraSet, codec.JSON, max_bytes=1 << 20)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_json_nan_and_infinities_refused(constant: bytes) -> None:
    """Python's parser takes them and pydantic let them into a zoo ``set``'s ``plugin_config``,
    which wrote them to ``config.json``: a file strict parsers (OVMS's) cannot read."""
    with pytest.raises(DecodeError) as info:
        codec.decode(b'{"v": 1, "fps": ' + constant + b"}", CameraSet, codec.JSON)
    assert constant.decode().lstrip("-") in str(info.value)
    assert info.value.code == ErrorCode.BAD_PAYLOAD


def test_error_messages_never_carry_a_password() -> None:
    """An error names what failed, often a URL: a camera's password in a GStreamer element's
    message reached the retained camera state, which viewers read."""
    error = StreamError(
        "camera door: souphttpsrc0: Not Found (URL: http://camuser:topsecret@10.0.0.5/video)"
    )
    for info in (ErrorInfo.of(error), ErrorInfo(code=ErrorCode.INTERNAL, message=str(error))):
        assert "topsecret" not in info.message
        assert "http://camuser:***@10.0.0.5/video" in info.message


def test_msgpack_non_json_values_refused() -> None:
    with pytest.raises(DecodeError):
        codec.decode(msgpack.packb({"v": 1, "fps": b"\x00"}), CameraSet, codec.MSGPACK)


def test_reports_ignore_unknown_fields_commands_refuse_them() -> None:
    desc = {
        "v": 1,
        "camera": "c",
        "url": "rtsp://h/c",
        "width": 640,
        "height": 480,
        "fps": 30,
        "node": "n",
        "source": "testsrc",
        "added_later": 1,
    }
    assert codec.decode(json.dumps(desc).encode(), StreamDescriptor).camera == "c"
    spec = {"v": 1, "models": [{"name": "face", "threshhold": 0.3}]}
    with pytest.raises(SchemaError) as info:
        codec.decode(json.dumps(spec).encode(), PipelineSpec)
    assert "threshhold" in str(info.value)


def test_reply_is_ok_or_error() -> None:
    assert Reply.success({"a": 1}).ok
    bad = Reply.refuse(ErrorCode.NOT_FOUND, "no model x")
    assert not bad.ok and bad.error is not None and bad.error.code == ErrorCode.NOT_FOUND
    with pytest.raises(SchemaError):
        codec.decode(b'{"v": 1, "ok": true, "error": {"code": "internal", "message": "x"}}', Reply)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for ct in (codec.JSON, codec.MSGPACK, None):
        try:
            codec.decode(data, ZooRequestAdapter, ct)
        except (DecodeError, SchemaError, VersionError, TooLarge):
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.slow  # many seconds (see README, Developing)
@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "action", "name", "source", "fps", "models"]), json_values
    )
)
def test_arbitrary_documents_never_crash(doc: dict[str, object]) -> None:
    data = json.dumps(doc).encode()
    try:
        codec.decode(data, ZooRequestAdapter, codec.JSON)
        codec.decode(data, PipelineSpec, codec.JSON)
    except (DecodeError, SchemaError, VersionError, TooLarge):
        pass
