"""The import contract, read from the source (every import, at module level or inside a function):
the client library never imports the services, no worker imports another worker, and there are no
import cycles (a lazy import inside a function still counts: it only hides the cycle)."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ovbus", "services")
WORKERS = ("capture", "infer", "zoo")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` (never executed)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for orelse in child.orelse:
                yield orelse
                yield from runtime_nodes(orelse)
            continue
        yield child
        yield from runtime_nodes(child)


def imported(path: Path, name: str, known: set[str], *, type_only: bool = False) -> Iterator[str]:
    """The project modules ``path`` imports at run time (``from a.b import c`` is ``a.b.c`` when
    that is a module, else ``a.b``); with ``type_only``, those under ``if TYPE_CHECKING:`` too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree) if type_only else runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def graph(*, type_only: bool = False) -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {
        name: set(imported(path, name, known, type_only=type_only)) for name, path in mods.items()
    }


def without_package_exports(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ importing its own modules is how a package exposes them, not a cycle."""
    return {
        name: {t for t in targets if not t.startswith(name + ".")}
        for name, targets in edges.items()
    }


def worker_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in WORKERS else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_library_imports_nothing_from_the_services() -> None:
    bad = [
        f"{m} -> {t}"
        for m, targets in graph().items()
        if m.split(".")[0] == "ovbus"
        for t in sorted(targets)
        if t.split(".")[0] == "services"
    ]
    assert bad == []


def test_no_worker_imports_another() -> None:
    bad = [
        f"{m} -> {t}"
        for m, targets in graph().items()
        for t in sorted(targets)
        if worker_of(m) and worker_of(t) and worker_of(m) != worker_of(t)
    ]
    assert bad == []


def test_no_import_cycles() -> None:
    assert cycles(without_package_exports(graph())) == []


def test_no_import_cycles_in_the_library_even_type_only() -> None:
    """Inside ``ovbus/`` an import under ``if TYPE_CHECKING:`` counts too: it is a cycle in the
    design even if not at run time (``messages -> bus`` and ``rpc -> bus`` were: subscriptions
    and request/reply now see a bus only as ``ovbus.messages.Transport``)."""
    edges = {
        name: {t for t in targets if t.split(".")[0] == "ovbus"}
        for name, targets in without_package_exports(graph(type_only=True)).items()
        if name.split(".")[0] == "ovbus"
    }
    assert cycles(edges) == []
    assert "ovbus.bus" not in edges["ovbus.messages"] | edges["ovbus.rpc"]


def test_no_module_over_the_size_limit() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_checker_sees_what_it_must() -> None:
    """The contract checks above would catch a violation: cycles and lazy imports are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = graph()
    # services.cli imports the replay command inside a function: lazy imports are seen
    assert "services.replay_cli" in edges["services.cli"]
    assert worker_of("services.zoo.worker") == "zoo" and worker_of("services.cli") is None


def test_the_checker_sees_type_only_imports(tmp_path: Path) -> None:
    """An import under ``if TYPE_CHECKING:`` is left out of the run-time graph and seen in the
    type-only one, so a back edge such as the old ``messages -> bus`` makes a cycle there."""
    module = tmp_path / "probe.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ovbus.codec import encode\n"
        "if TYPE_CHECKING:\n"
        "    from ovbus.bus import Bus\n"
    )
    known = set(modules())
    assert set(imported(module, "ovbus.probe", known)) == {"ovbus.codec"}
    seen = set(imported(module, "ovbus.probe", known, type_only=True))
    assert seen == {"ovbus.codec", "ovbus.bus"}
    edges = graph(type_only=True)
    edges["ovbus.probe"] = seen
    edges["ovbus.bus"] = edges["ovbus.bus"] | {"ovbus.probe"}
    assert any({"ovbus.bus", "ovbus.probe"} <= set(c) for c in cycles(edges))


def loaded_after(code: str) -> set[str]:
    """The project modules in ``sys.modules`` after ``code`` ran in a fresh interpreter."""
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        f"{code}\n"
        "names = sorted(m for m in sys.modules if m.split('.')[0] in ('ovbus', 'services'))\n"
        "print('LOADED ' + json.dumps(names))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("LOADED "))
    return set(json.loads(line.removeprefix("LOADED ")))


def other_workers(worker: str, loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if worker_of(m) not in (None, worker))


#: ``python -m services.<worker> --help``, as a shell runs it
RUN_HELP = (
    "import runpy\n"
    "sys.argv = ['services.{worker}', '--help']\n"
    "try:\n    runpy.run_module('services.{worker}', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as e:\n    assert e.code == 0\n"
)


def test_no_worker_loads_another_at_run_time() -> None:
    """Transitively, not only the direct imports: ``python -m services.<worker> --help`` (its
    command line built) and importing its entry module (``services.<worker>.worker``) load no
    module of another worker (``ovbus capture`` used to load the zoo's client and every
    worker's settings while building its parser)."""
    bad = {}
    for worker in WORKERS:
        code = RUN_HELP.format(worker=worker) + f"import services.{worker}.worker\n"
        if found := other_workers(worker, loaded_after(code)):
            bad[worker] = found
    assert bad == {}


def test_the_transitive_check_sees_what_it_must() -> None:
    """Positive control: the full parser (every command's flags, as ``ovbus --help`` builds
    it) loads every worker's settings, and the check above reports them for capture."""
    loaded = loaded_after("from services.cli import build_parser\nbuild_parser()\n")
    assert {"services.infer.settings", "services.zoo.settings"} <= set(
        other_workers("capture", loaded)
    )


def test_the_library_and_the_worker_commands_run_without_the_extras() -> None:
    """``import ovbus`` (a notebook, a third party) needs no GStreamer, OpenVINO, OpenCV or rich,
    and ``ovbus capture --help`` needs no rich (it is in the zoo and demo extras only)."""
    import subprocess
    import sys

    blocked = ["rich", "gi", "openvino", "cv2", "tritonclient"]
    library = [m for m in modules() if m.startswith("ovbus")]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import importlib\n"
        f"for m in {library!r}: importlib.import_module(m)\n"
        "from services.cli import main\n"
        "try:\n    main(['capture', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_architecture_doc_lists_every_module() -> None:
    """docs/architecture.md's module tables name every module, as a path from its package root
    (`topics.py`, `payloads/events.py`, `capture/camera.py`)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            rel = path.relative_to(ROOT / package).as_posix()
            if f"`{rel}`" not in text:
                missing.append(f"{package}/{rel}")
    assert missing == []
