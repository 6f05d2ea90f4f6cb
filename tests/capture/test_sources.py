"""The plain parts of the capture worker: camera specs, source descriptions, encoder choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovbus.errors import ConfigError, StreamError
from services.capture.encoders import check_size, choose_encoder, encoder_description
from services.capture.sources import (
    Geometry,
    Source,
    find_usb_camera,
    fps_fraction,
    parse_cameras,
    parse_source,
    source_description,
)

GEOMETRY = Geometry(640, 480, 30.0)


def test_parse_cameras_names_and_kinds() -> None:
    cams = parse_cameras(
        [
            "door=/dev/video0",
            "auto",
            "yard=rtsp://10.0.0.5:554/stream1",
            "web=http://10.0.0.6/mjpg/video.mjpg",
            "clip=/data/clip one.mp4",
            "testsrc",
            "pipeline:videotestsrc pattern=ball ! videoflip method=rotate-180",
            "clock=testsrc:clock",
        ]
    )
    assert {name: s.kind for name, s in cams.items()} == {
        "door": "v4l2",
        "webcam": "v4l2",
        "yard": "rtsp",
        "web": "http",
        "clip": "file",
        "testsrc": "testsrc",
        "pipeline": "pipeline",
        "clock": "testsrc",
    }
    assert cams["pipeline"].value == "videotestsrc pattern=ball ! videoflip method=rotate-180"
    assert cams["clock"].clock_barcode and not cams["testsrc"].clock_barcode
    assert not cams["clip"].live and cams["door"].live


@pytest.mark.parametrize(
    ("specs", "words"),
    [
        ([], "no camera"),
        (["a=testsrc", "a=testsrc"], "given twice"),
        (["a=ftp://host/x"], "unsupported url scheme"),
        (["a=pipeline:"], "empty description"),
        (["a="], "empty camera source"),
        (["bad name!=testsrc"], "invalid camera name"),
    ],
)
def test_parse_cameras_refuses(specs: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cameras(specs)
    assert words in str(info.value).lower()


def test_fps_fraction() -> None:
    assert fps_fraction(29.97) == pytest.approx(29.97, abs=0.001)
    assert fps_fraction(29.97).denominator == 1001 or fps_fraction(29.97).denominator == 100
    assert fps_fraction(15.0).denominator == 1


def test_descriptions_check_devices_and_files(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="/dev/video9 does not exist"):
        source_description(parse_source("/dev/video9"), GEOMETRY)
    with pytest.raises(StreamError, match="does not exist"):
        source_description(parse_source(str(tmp_path / "none.mp4")), GEOMETRY)
    clip = tmp_path / 'a "quoted" clip.mp4'
    clip.write_bytes(b"x")
    assert source_description(parse_source(str(clip)), GEOMETRY) == (
        f'filesrc location="{tmp_path}/a \\"quoted\\" clip.mp4" ! decodebin'
    )
    rtsp = source_description(parse_source("rtsp://h/x"), GEOMETRY)
    assert rtsp.startswith('rtspsrc location="rtsp://h/x"') and "protocols=tcp" in rtsp
    clock = source_description(parse_source("testsrc:clock"), GEOMETRY)
    assert "appsrc name=clocksrc" in clock and "framerate=30/1" in clock
    pipe = Source("pipeline", "videotestsrc is-live=true")
    assert source_description(pipe, GEOMETRY) == "videotestsrc is-live=true"


def test_find_usb_camera_reads_sysfs(tmp_path: Path) -> None:
    with pytest.raises(StreamError, match="no USB camera"):
        find_usb_camera(tmp_path)
    devices = tmp_path / "devices"
    for name, bus, index in [
        ("video0", "platform/bcm2835-codec", "0"),  # a Pi's codec node, not a camera
        ("video3", "pci0000:00/usb1/1-1/1-1:1.0", "1"),  # UVC metadata node
        ("video2", "pci0000:00/usb1/1-1/1-1:1.0", "0"),
        ("video5", "pci0000:00/usb1/1-2/1-2:1.0", "0"),
    ]:
        target = devices / bus / name
        target.mkdir(parents=True)
        node = tmp_path / name
        node.mkdir()
        (node / "device").symlink_to(target)
        (node / "index").write_text(index + "\n")
    assert find_usb_camera(tmp_path) == "/dev/video2"


def test_choose_encoder() -> None:
    def only(*names: str) -> object:
        return lambda element: element in names

    assert choose_encoder("auto", only("x264enc")) == ("x264", "x264enc")  # type: ignore[arg-type]
    assert choose_encoder("auto", only("x264enc", "v4l2h264enc")) == ("v4l2", "v4l2h264enc")  # type: ignore[arg-type]
    assert choose_encoder("auto", only("x264enc", "vaapih264enc")) == ("vaapi", "vaapih264enc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not available"):
        choose_encoder("vaapi", only("x264enc"))  # type: ignore[arg-type]
    assert "key-int-max=15" in encoder_description("h264", "x264enc", 1000, 15.0)
    assert encoder_description("mjpeg", "jpegenc", 1000, 15.0).startswith("jpegenc")


def test_check_size() -> None:
    check_size("h264", 1920, 1080)
    with pytest.raises(ConfigError, match="even"):
        check_size("h264", 641, 480)
    with pytest.raises(ConfigError, match="2040"):
        check_size("mjpeg", 2560, 1440)
    with pytest.raises(ConfigError, match="4096x2304"):
        check_size("h264", 7680, 4320)


def test_v4l2_opened_in_the_chosen_mode(tmp_path: Path) -> None:
    device = tmp_path / "video0"  # any existing path stands for the device node here
    device.touch()
    caps = "image/jpeg,width=1280,height=720,framerate=15/1"
    head = source_description(Source("v4l2", str(device)), Geometry(1280, 720, 15.0), caps)
    assert head == f'v4l2src device="{device}" ! capsfilter caps="{caps}" ! decodebin'


def test_primary_address_is_an_ipv4_address() -> None:
    import ipaddress

    from services.capture.server import primary_address

    assert ipaddress.ip_address(primary_address()).version == 4
