"""The accuracy benchmark's npm source (``services/npm_packages.py``, through
``services.demo.assets``): a real ``npm pack`` of the pinned ``@vladmandic/face-api`` 1.7.15
(12.7 MB) into a temporary cache, its checks (the pinned sha256, a tampered cache, the name and
version before npm runs, npm's report), its members (missing, a link, too large, ``..``), the npm
photos' entries in ``labels.json`` and their split. That tuning never loads a ``test`` photo of
any source is ``tests/test_accuracy.py``'s check (every source has photos in both splits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import cv2
import pytest

from bench.accuracy.labels import LABELS, Photo, load_labels, of_split, photo_image
from ovbus.errors import ErrorCode, FetchError
from services import npm_packages, pinned

FACE_API = ("@vladmandic/face-api", "1.7.15")
#: the sha256 pinned in labels.json for its tarball
FACE_API_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
PIN = (*FACE_API, FACE_API_SHA256)
NPM_IDS = {f"faceapi-{k}" for k in range(1, 7)}


def test_an_npm_member_is_fetched_checked_and_extracted(tmp_path: Path) -> None:
    tgz = npm_packages.fetch_package(*PIN, tmp_path)
    assert tgz == tmp_path / FACE_API_SHA256 / "vladmandic+face-api-1.7.15.tgz"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [tgz.name]  # nothing else
    meta = json.loads(npm_packages.extract_member(tgz, "package.json", tmp_path / "p").read_text())
    assert (meta["name"], meta["version"], meta["license"]) == (*FACE_API, "MIT")
    photo = npm_packages.extract_member(tgz, "demo/sample1.jpg", tmp_path / "s1.jpg")
    image = cv2.imread(str(photo))
    assert image is not None and image.shape == (1280, 1920, 3)
    # a member that is not there, or over the size limit: refused, no file left behind
    with pytest.raises(FetchError, match="has no member") as e:
        npm_packages.extract_member(tgz, "demo/sample7.jpg", tmp_path / "f")
    assert e.value.code == ErrorCode.NOT_FOUND and not (tmp_path / "f").exists()
    with pytest.raises(FetchError, match="over the limit") as e:
        npm_packages.extract_member(tgz, "demo/sample1.jpg", tmp_path / "g", max_bytes=1000)
    assert e.value.code == ErrorCode.TOO_LARGE and not (tmp_path / "g").exists()
    # a cached tarball changed on disk is dropped and packed again, never used
    tgz.write_bytes(b"\x1f\x8b not the package")
    again = npm_packages.fetch_package(*PIN, tmp_path)
    assert again == tgz and hashlib.sha256(tgz.read_bytes()).hexdigest() == FACE_API_SHA256
    same = npm_packages.extract_member(again, "demo/sample1.jpg", tmp_path / "h.jpg")
    assert same.read_bytes() == photo.read_bytes()


def test_an_npm_package_with_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="does not match the expected") as e:
        npm_packages.fetch_package(*FACE_API, "0" * 64, tmp_path)
    assert e.value.code == ErrorCode.CHECKSUM_MISMATCH
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing kept


@pytest.mark.parametrize(
    ("name", "version", "sha256", "what"),
    [
        ("--registry=http://127.0.0.1:9/", "1.7.15", FACE_API_SHA256, "package name"),
        ("-face-api", "1.7.15", FACE_API_SHA256, "package name"),
        ("@vladmandic/../face-api", "1.7.15", FACE_API_SHA256, "package name"),
        ("https://127.0.0.1/x.tgz", "1.7.15", FACE_API_SHA256, "package name"),
        ("git+ssh://git@127.0.0.1/x", "1.7.15", FACE_API_SHA256, "package name"),
        ("file:../x", "1.7.15", FACE_API_SHA256, "package name"),
        ("@Vladmandic/face-api", "1.7.15", FACE_API_SHA256, "package name"),
        ("x" * 215, "1.7.15", FACE_API_SHA256, "package name"),
        ("@vladmandic/face-api", "^1.7.15", FACE_API_SHA256, "version"),
        ("@vladmandic/face-api", "latest", FACE_API_SHA256, "version"),
        ("@vladmandic/face-api", "v1.7.15", FACE_API_SHA256, "version"),
        ("@vladmandic/face-api", "1.7", FACE_API_SHA256, "version"),
        ("@vladmandic/face-api", "1.7.15 --dry-run", FACE_API_SHA256, "version"),
        ("@vladmandic/face-api", "1.7.15", "0d77", "sha256"),
    ],
)
def test_a_bad_pin_is_refused_before_npm_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    version: str,
    sha256: str,
    what: str,
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"npm ran: {args}")

    monkeypatch.setattr("services.pinned.subprocess.run", never)
    with pytest.raises(FetchError, match=f"bad (npm )?{what}") as e:
        npm_packages.fetch_package(name, version, sha256, tmp_path)
    assert e.value.code == ErrorCode.BAD_REQUEST
    assert not list(tmp_path.iterdir())
    # a good pin passes the same check (the pinned package, a prerelease with build metadata)
    npm_packages.check_pin(*PIN)
    npm_packages.check_pin("left-pad", "1.0.0-rc.1+build.5", FACE_API_SHA256)


def test_npm_packs_report_must_name_the_one_tarball(tmp_path: Path) -> None:
    spec = "@vladmandic/face-api@1.7.15"
    good = [{"id": spec, "filename": "vladmandic-face-api-1.7.15.tgz"}]
    assert npm_packages._reported(json.dumps(good), spec) == good[0]["filename"]
    for bad in ("npm notice", json.dumps([]), json.dumps(good * 2)):
        with pytest.raises(FetchError, match="npm pack"):
            npm_packages._reported(bad, spec)
    with pytest.raises(FetchError, match="not of one tarball"):
        npm_packages._reported(json.dumps([{**good[0], "id": "other@1.0.0"}]), spec)

    # the shared fetch: a download that leaves another file than it reported, or two, is refused
    def writes(*names: str) -> pinned.Download:
        def download(folder: Path) -> str:
            for n in names:
                (folder / n).write_bytes(b"x")
            return "a.tgz"

        return download

    x_sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"  # of b"x"
    for names, error in ((("b.tgz",), "wrote b.tgz"), (("a.tgz", "b.tgz"), "left 2 .tgz")):
        with pytest.raises(FetchError, match=error):
            pinned.fetch_pinned(tmp_path / "c" / "a.tgz", x_sha, "x", ".tgz", writes(*names))
        assert not list((tmp_path / "c").iterdir())
    assert pinned.fetch_pinned(tmp_path / "c" / "a.tgz", x_sha, "x", ".tgz", writes("a.tgz"))


def _tarball(path: Path, members: dict[str, bytes | str]) -> Path:
    """A gzipped tar of regular files (bytes) and symbolic links (str: the link's target)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(body, str):
                info.type, info.linkname = tarfile.SYMTYPE, body
                archive.addfile(info)
            else:
                info.size = len(body)
                archive.addfile(info, io.BytesIO(body))
    return path


def test_a_link_or_a_path_out_of_the_package_is_refused(tmp_path: Path) -> None:
    tgz = _tarball(
        tmp_path / "t.tgz",
        {
            "package/demo/real.jpg": b"jpeg",
            "package/demo/link.jpg": "/etc/passwd",
            "package/demo/up.jpg": "../../../etc/passwd",
            "secret.txt": b"outside package/",
        },
    )
    assert (
        npm_packages.extract_member(tgz, "demo/real.jpg", tmp_path / "ok").read_bytes() == b"jpeg"
    )
    for link in ("demo/link.jpg", "demo/up.jpg"):
        with pytest.raises(FetchError, match="not a regular file") as e:
            npm_packages.extract_member(tgz, link, tmp_path / "l")
        assert e.value.code == ErrorCode.FORBIDDEN_PATH and not (tmp_path / "l").exists()
    for name in ("../secret.txt", "demo/../../secret.txt", "/etc/passwd", "", "."):
        with pytest.raises(FetchError, match="bad member name") as e:
            npm_packages.extract_member(tgz, name, tmp_path / "u")
        assert e.value.code == ErrorCode.FORBIDDEN_PATH and not (tmp_path / "u").exists()
    with pytest.raises(FetchError, match="cannot read"):
        npm_packages.extract_member(tmp_path / "ok", "demo/real.jpg", tmp_path / "v")
    assert not (tmp_path / "v").exists()


def _npm_photo(**changes: Any) -> Photo:
    base = Photo(
        "p", *FACE_API, "demo/sample2.jpg", (1920, 1367), "MIT", {}, "dev", "npm", FACE_API_SHA256
    )
    return dataclasses.replace(base, **changes)


def test_an_npm_photo_is_fetched_through_the_assets_cache(package_cache: Path) -> None:
    image = photo_image(_npm_photo())
    assert image.shape == (1367, 1920, 3)
    assert len(list((package_cache / "assets" / "npm" / FACE_API_SHA256).iterdir())) == 1
    assert list((package_cache / "npm" / FACE_API_SHA256).glob("*.tgz"))
    with pytest.raises(FetchError, match="does not match the expected"):
        photo_image(_npm_photo(member="demo/sample3.jpg", sha256="1" * 64))
    with pytest.raises(FetchError, match="has no member"):
        photo_image(_npm_photo(member="demo/nothing.jpg"))
    with pytest.raises(FetchError, match="bad npm version"):
        photo_image(_npm_photo(version="latest"))
    # a photo that is not the size its labels were drawn on is refused
    with pytest.raises(ValueError, match="labels say"):
        photo_image(_npm_photo(member="demo/sample1.jpg"))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda p: p.pop("sha256"), "npm package but pins no sha256"),
        (lambda p: p.update(version="1.7"), "bad npm version"),
        (lambda p: p.update(package="@Vladmandic/face-api"), "bad npm package name"),
        (lambda p: p.update(package="-x"), "bad npm package name"),
        (lambda p: p.update(sha256="0d77"), "bad sha256"),
        (lambda p: p.update(source="pypi"), "has source 'pypi'"),
        (lambda p: p["boxes"]["face"].append([1800, 10, 1930, 100]), "face box .* is bad"),
    ],
)
def test_a_bad_npm_entry_in_the_labels_is_refused(
    tmp_path: Path, change: object, error: str
) -> None:
    doc = json.loads(LABELS.read_text())
    entry = next(p for p in doc["photos"] if p["id"] == "faceapi-3")
    change(entry)  # type: ignore[operator]
    (tmp_path / "l.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=error):
        load_labels(tmp_path / "l.json")


def test_the_npm_photos_and_their_split() -> None:
    photos = load_labels()
    npm = {p.id: p for p in photos if p.source == "npm"}
    assert set(npm) == NPM_IDS
    assert all(
        p.sha256 == FACE_API_SHA256 and (p.package, p.version) == FACE_API for p in npm.values()
    )
    assert all(p.licence.startswith("MIT (the npm package's licence") for p in npm.values())
    # whole photos per split (each its own group, room and day): 10 faces in dev, 12 in test
    split = {s: {p.id for p in of_split(list(npm.values()), s)} for s in ("dev", "test")}
    assert split == {
        "dev": {"faceapi-1", "faceapi-2", "faceapi-4"},
        "test": {"faceapi-3", "faceapi-5", "faceapi-6"},
    }
    faces = {s: sum(len(npm[i].boxes["face"]) for i in ids) for s, ids in split.items()}
    assert faces == {"dev": 10, "test": 12}
    assert all(len(p.boxes["face"]) == len(p.boxes["person"]) for p in npm.values())
    assert len({p.member for p in npm.values()}) == 6
