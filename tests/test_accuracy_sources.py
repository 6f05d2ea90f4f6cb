"""Where the accuracy benchmark's photos come from: the Debian package source (``services/debs.py``
through ``services.demo.assets``, a real ``apt-get download`` of the small ``hello`` package of
Debian 12), its checks (the pinned sha256, the member, the name and version), the checks of a
``deb`` photo's entry in ``labels.json``, and frames of a video as photos. The benchmark's own
photos are fetched as the other accuracy tests fetch their wheels: from the registry, once, into
``.cache/``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.accuracy import labels as labels_module
from bench.accuracy.labels import LABELS, Photo, load_labels, of_split, photo_image, video_frame
from ovbus.errors import ErrorCode, FetchError
from services import debs

#: Debian 12's hello, 53 kB (``apt-cache show hello``)
HELLO = ("hello", "2.10-3", "2e6e2f1a0007dc43bc91c273fd36e91e40a4f1c2765a03eca68b70a42103878a")
COPYRIGHT = "./usr/share/doc/hello/copyright"


def test_a_deb_member_is_fetched_checked_and_extracted(tmp_path: Path) -> None:
    deb = debs.fetch_deb(*HELLO, tmp_path)
    assert deb == tmp_path / HELLO[2] / "hello_2.10-3.deb"
    out = debs.extract_member(deb, COPYRIGHT, tmp_path / "c")
    assert "GNU Hello" in out.read_text() or "hello" in out.read_text()
    # the same member named as dpkg -c lists it or without the "./"
    again = debs.extract_member(deb, COPYRIGHT.removeprefix("./"), tmp_path / "d")
    assert again.read_bytes() == out.read_bytes()
    # a directory, a member that is not there: refused, and no file is left behind
    with pytest.raises(FetchError, match="not a regular file") as e:
        debs.extract_member(deb, "./usr/share/doc/hello", tmp_path / "e")
    assert e.value.code == ErrorCode.FORBIDDEN_PATH and not (tmp_path / "e").exists()
    with pytest.raises(FetchError, match="has no member") as e:
        debs.extract_member(deb, "./usr/share/doc/hello/nothing.png", tmp_path / "f")
    assert e.value.code == ErrorCode.NOT_FOUND and not (tmp_path / "f").exists()
    # a member over the size limit
    with pytest.raises(FetchError, match="over the limit"):
        debs.extract_member(deb, COPYRIGHT, tmp_path / "g", max_bytes=100)
    # a cached .deb changed on disk is dropped and fetched again, never used
    deb.write_bytes(b"!<arch>\nnot the package")
    assert debs.fetch_deb(*HELLO, tmp_path).read_bytes()[:8] == b"!<arch>\n"
    assert debs.extract_member(deb, COPYRIGHT, tmp_path / "h").read_bytes() == out.read_bytes()


def test_a_deb_with_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(FetchError, match="does not match the expected") as e:
        debs.fetch_deb(HELLO[0], HELLO[1], wrong, tmp_path)
    assert e.value.code == ErrorCode.CHECKSUM_MISMATCH
    assert not list(tmp_path.rglob("*.deb"))  # nothing kept


def test_a_file_that_is_not_a_deb_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "x.deb"
    fake.write_bytes(b"PK\x03\x04 a zip, not an ar archive")
    with pytest.raises(FetchError, match="not a Debian package"):
        debs.extract_member(fake, COPYRIGHT, tmp_path / "out")
    fake.write_bytes(
        b"!<arch>\n" + b"debian-binary   0           0     0     100644  4         `\n2.0\n"
    )
    with pytest.raises(FetchError, match=r"has no data\.tar member"):
        debs.extract_member(fake, COPYRIGHT, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("package", "version", "sha256", "what"),
    [
        ("-oDebug::pkgAcquire=1", "1.0", HELLO[2], "package name"),
        ("hello", "2.10-3 --print-uris", HELLO[2], "version"),
        ("hello", "2.10-3", "abc", "sha256"),
    ],
)
def test_a_bad_pin_is_refused_before_apt_runs(
    tmp_path: Path, package: str, version: str, sha256: str, what: str
) -> None:
    with pytest.raises(FetchError, match=f"bad (Debian )?{what}") as e:
        debs.fetch_deb(package, version, sha256, tmp_path)
    assert e.value.code == ErrorCode.BAD_REQUEST
    assert not list(tmp_path.iterdir())


def _deb_photo(**changes: Any) -> Photo:
    base = Photo("p", *HELLO[:2], COPYRIGHT, (10, 10), "GPL-3.0+", {}, "dev", "deb", HELLO[2])
    return dataclasses.replace(base, **changes)


def test_a_deb_photo_is_fetched_and_checked(package_cache: Path) -> None:
    # the member is fetched through the assets' cache (not an image: cv2 cannot read it)
    with pytest.raises(ValueError, match="cannot read"):
        photo_image(_deb_photo())
    assert list((package_cache / "assets" / "deb" / HELLO[2]).iterdir())
    with pytest.raises(FetchError, match="does not match the expected"):
        photo_image(_deb_photo(sha256="1" * 64))
    with pytest.raises(FetchError, match="has no member"):
        photo_image(_deb_photo(member="./usr/share/doc/hello/nothing.png"))


def _entry(doc: dict[str, list[dict[str, object]]], photo_id: str) -> dict[str, object]:
    return next(p for p in doc["photos"] if p["id"] == photo_id)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda p: p["boxes"]["person"].append([600, 10, 800, 100]), "person box .* is bad"),
        (lambda p: p["boxes"]["face"].append([50, 50, 40, 60]), "face box .* is bad"),
        (lambda p: p.pop("member"), "names no member"),
        (lambda p: p.pop("sha256"), "pins no sha256"),
        (lambda p: p.update(sha256="4b12"), "bad sha256"),
        (lambda p: p.update(version="4.6 0"), "bad Debian version"),
        (lambda p: p.update(source="git"), "has source 'git'"),
        (lambda p: p.update(source="wheel"), "sha256 comes from the index"),
        (lambda p: p.update(frame=-1), "has frame -1"),
        (lambda p: p.update(frame="30"), "has frame '30'"),
    ],
)
def test_a_bad_deb_entry_in_the_labels_is_refused(
    tmp_path: Path, change: object, error: str
) -> None:
    doc = json.loads(LABELS.read_text())
    entry = _entry(doc, "hall-470")
    change(entry)  # type: ignore[operator]
    (tmp_path / "l.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=error):
        load_labels(tmp_path / "l.json")


def test_the_deb_photos_and_their_split() -> None:
    photos = load_labels()
    debs_ = [p for p in photos if p.source == "deb"]
    assert {p.id for p in debs_} >= {"basketball", "hall-030", "hall-770"}
    assert all(p.sha256 and p.licence.startswith("Apache-2.0 AND BSD-3-Clause") for p in debs_)
    # the frames of one video (the same people again and again) are all in one split
    hall = [p for p in photos if p.member.endswith("vtest.avi")]
    assert len(hall) >= 8 and {p.split for p in hall} == {"test"}
    assert len({p.frame for p in hall}) == len(hall)
    assert "basketball" in {p.id for p in of_split(photos, "dev")}


def test_a_frame_of_a_video_is_the_same_frame_every_time() -> None:
    photos = {p.id: p for p in load_labels()}
    path = labels_module.photo_file(photos["hall-570"])
    first, again = video_frame(path, 570), video_frame(path, 570)
    assert first is not None and again is not None and np.array_equal(first, again)
    other = video_frame(path, 470)
    assert other is not None and np.abs(first.astype(int) - other).mean() > 1.0
    assert np.array_equal(photo_image(photos["hall-570"]), first)
    # a frame past the end is a clear error, not a black image
    with pytest.raises(ValueError, match="frame 100000"):
        photo_image(dataclasses.replace(photos["hall-570"], frame=100000))
