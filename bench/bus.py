"""Benchmark 4, the bus: bytes per result in JSON and MessagePack, and results/s one Mosquitto
carries from a publisher to a subscriber (QoS 0, as detections are published), measured in one run.

Ratios: msgpack/JSON bytes; and broker capacity over the load of 8 cameras at 30 fps (240
results/s), i.e. how many such boxes one broker can serve.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.report import Report, Row
from ovbus import codec
from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads import DetectedObject, DetectionResult, ModelResult
from services.mosquitto import Mosquitto

CAMERAS_AT_30FPS = 8 * 30


def typical_result(objects: int) -> DetectionResult:
    return DetectionResult(
        camera="front-door",
        node="infer-nuc-1",
        frame=123456,
        width=640,
        height=480,
        captured_at=1_795_000_000.123456,
        captured_clock="rtcp-ntp",
        published_at=1_795_000_000.151234,
        models=[
            ModelResult(
                name="blazeface",
                version=1,
                device="CPU",
                backend="openvino",
                inference_ms=2.71828,
                objects=[
                    DetectedObject(
                        label="face",
                        score=0.9137,
                        box=[100 + i, 120, 180 + i, 210],
                        model="blazeface",
                    )
                    for i in range(objects)
                ],
            )
        ],
    )


def sizes(report: Report) -> None:
    for n in (0, 1, 5, 20):
        result = typical_result(n)
        js = len(codec.encode(result, codec.JSON))
        mp = len(codec.encode(result, codec.MSGPACK))
        report.add(
            Row(
                "bus",
                f"bytes per result, {n} objects",
                {"json": js, "msgpack": mp},
                ratio=mp / js,
                target="msgpack smaller",
            )
        )


def throughput(report: Report, count: int, content_type: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(workdir=Path(tmp)) as broker:
        pub = Bus(broker.url, prefix="bench").connect()
        sub_bus = Bus(broker.url, prefix="bench", queue_size=count + 10).connect()
        topic = pub.topics.detections("front-door")
        sub = sub_bus.subscribe(topic, qos=0, idle_timeout=5)
        payload = codec.encode(typical_result(3), content_type)
        start = time.perf_counter()
        for _ in range(count):
            pub.publish(topic, payload, qos=0, content_type=content_type)
        received = 0
        last = start
        try:
            while received < count:
                sub.get(timeout=3)
                received += 1
                last = time.perf_counter()
        except BusTimeout:
            pass
        elapsed = last - start
        rate = received / elapsed
        pub.close()
        sub_bus.close()
    name = "json" if content_type == codec.JSON else "msgpack"
    report.add(
        Row(
            "bus",
            f"results/s through one broker ({name}, QoS 0)",
            {
                "sent": count,
                "received": received,
                "lost_pct": 100.0 * (count - received) / count,
                "seconds": elapsed,
                "results_per_s": rate,
            },
            ratio=rate / CAMERAS_AT_30FPS,
            target="x (8 cameras at 30 fps)",
        )
    )


def run(report: Report, quick: bool = False) -> None:
    sizes(report)
    count = 5000 if quick else 30000
    for ct in (codec.JSON, codec.MSGPACK):
        throughput(report, count, ct)
    report.notes.append(
        "Broker throughput is publisher to broker to subscriber on loopback, all on this machine; the "
        "ratio is how many 8-camera, 30 fps boxes one broker carries. The publisher sends as fast "
        "as it can (QoS 0, as detections are sent), far above any real load, so Mosquitto drops "
        "part of it (lost_pct): results/s is what was delivered, the broker's ceiling here."
    )
