"""Zoo fixtures: a real IR of BlazeFace served in the Open Model Zoo layout, a PEP 503 index
serving the real mediapipe wheel, and a zoo worker on the real broker."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovbus.node import Node
from ovbus.settings import NodeSettings
from services.mosquitto import Mosquitto
from services.zoo.dispatch import Dispatcher
from services.zoo.service import Zoo
from services.zoo.settings import ZooSettings
from services.zoo.worker import start
from tests import assets
from tests.zoo.servers import serve_folder

#: The repository (the working folder of worker processes started by tests).
ROOT = Path(__file__).resolve().parents[2]
#: The OMZ-style name the converted BlazeFace is served under.
OMZ_MODEL = "blazeface-test-0001"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Site:
    """What the local web server offers."""

    url: str
    root: Path
    omz_url: str
    index_url: str
    bad_index_url: str
    ir_xml: Path
    ir_bin: Path
    catalog: Path


def _index_page(links: list[tuple[str, str]]) -> str:
    anchors = "\n".join(f'<a href="{href}">{text}</a><br/>' for href, text in links)
    return f"<!DOCTYPE html><html><body>\n{anchors}\n</body></html>\n"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    import openvino as ov

    root = tmp_path_factory.mktemp("site")
    # a real IR, converted from the real BlazeFace by OpenVINO, in the OMZ storage layout
    omz = root / "omz" / OMZ_MODEL / "FP32"
    omz.mkdir(parents=True)
    model = ov.convert_model(str(assets.blazeface()))
    ov.save_model(model, str(omz / f"{OMZ_MODEL}.xml"), compress_to_fp16=False)
    xml, binary = omz / f"{OMZ_MODEL}.xml", omz / f"{OMZ_MODEL}.bin"
    # a PEP 503 index with the real mediapipe wheel (symlinked, not copied)
    wheel = assets.wheel("mediapipe", "0.10.21")
    files = root / "files"
    files.mkdir()
    (files / wheel.name).symlink_to(wheel)
    digest = sha256(wheel)
    for index, fragment in (("simple", digest), ("bad-simple", "0" * 64)):
        page = root / index / "mediapipe"
        page.mkdir(parents=True)
        (page / "index.html").write_text(
            _index_page([(f"../../files/{wheel.name}#sha256={fragment}", wheel.name)])
        )
    # a site catalog entry with the IR's real sizes and checksums, and one with a wrong one
    description = {
        "kind": "blazeface",
        "labels": ["face"],
        "layout": "NHWC",
        "color": "RGB",
        "mean": [127.5, 127.5, 127.5],
        "scale": [127.5, 127.5, 127.5],
        "options": {"num_layers": 4, "strides": [8, 16, 16, 16], "input_size": 128},
    }
    checks = {
        f"FP32/{OMZ_MODEL}.xml": {"size": xml.stat().st_size, "sha256": sha256(xml)},
        f"FP32/{OMZ_MODEL}.bin": {"size": binary.stat().st_size, "sha256": sha256(binary)},
    }
    catalog = root / "catalog.json"
    with serve_folder(root) as url:
        entries = [
            {
                "name": OMZ_MODEL,
                "title": "BlazeFace as an OMZ-style IR (test)",
                "source": {"type": "omz", "model": OMZ_MODEL},
                "precisions": ["FP32"],
                "files": checks,
                "description": description,
            },
            {
                "name": "tampered",
                "title": "same files, wrong checksum in the catalog (test)",
                "source": {"type": "omz", "model": OMZ_MODEL, "base_url": f"{url}/omz"},
                "files": {f"FP32/{OMZ_MODEL}.bin": {"sha256": "1" * 64}},
                "description": description,
            },
        ]
        catalog.write_text(json.dumps(entries))
        yield Site(
            url=url,
            root=root,
            omz_url=f"{url}/omz",
            index_url=f"{url}/simple",
            bad_index_url=f"{url}/bad-simple",
            ir_xml=xml,
            ir_bin=binary,
            catalog=catalog,
        )


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "import"
    folder.mkdir()
    return folder


@pytest.fixture
def zoo_settings(tmp_path: Path, site: Site, import_dir: Path) -> ZooSettings:
    return ZooSettings(
        models=tmp_path / "models",
        omz_url=site.omz_url,
        index_url=site.index_url,
        hf_endpoint=site.url,
        import_dirs=[import_dir],
        cache=tmp_path / "cache",
        catalog=site.catalog,
        download_timeout=10.0,
        convert_timeout=120.0,
    )


@dataclass
class Worker:
    zoo: Zoo
    dispatcher: Dispatcher
    node: Node


@pytest.fixture
def worker(broker: Mosquitto, prefix: str, zoo_settings: ZooSettings) -> Iterator[Worker]:
    """A zoo worker on the shared broker, in this process (its own node id and prefix)."""
    node_settings = NodeSettings(
        broker=broker.url, prefix=prefix, node_id=f"zoo-{uuid.uuid4().hex[:8]}"
    )
    node = Node(node_settings, "zoo", persistent=True, configure_logging=False)
    zoo, dispatcher = start(node, zoo_settings)
    node.connect(timeout=10)
    yield Worker(zoo, dispatcher, node)
    dispatcher.close()
    node.bus.close()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (files with their bytes), to prove nothing changed."""
    out: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return out
