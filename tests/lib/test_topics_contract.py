"""Nothing in ``ovbus/``, ``services/`` or ``bench/`` parses or assembles a topic by hand.

Topics are built with ``Topics`` and read back with ``Topics.parse``/``try_parse``, both from the
declarations of ``ovbus/topic_schema.py``. A ``topic.split("/")[-2]``, an ``endswith("/shadow")``
or an f-string ``f"{prefix}/replies/+"`` means a declaration is bypassed (and bypasses its name
checks): the AST scan below finds them. Uses that are not about ovbus topics are allowed one by
one, with the reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("ovbus", "services", "bench")
#: The modules that hold the schema and the topic value types: they are where levels are split.
SCHEMA_MODULES = {"ovbus/topics.py", "ovbus/topic_kind.py", "ovbus/topic_schema.py"}
#: (path, text of the line) -> why it is not a topic parsed by hand.
ALLOWED: dict[tuple[str, str], str] = {
    (
        "ovbus/homeassistant.py",
        'return Wildcard(f"{self.ha_prefix}/device/+/config")',
    ): "Home Assistant's discovery tree: its own prefix, outside the ovbus tree",
    (
        "ovbus/homeassistant.py",
        'oid, prefix = str(message.topic).split("/")[-2], self.bus.topics.prefix',
    ): "the object id of a Home Assistant device config topic, outside the ovbus tree",
    (
        "services/docgen.py",
        'return str(spec["$ref"]).rsplit("/", 1)[-1]',
    ): "a JSON Schema reference (#/$defs/Name), not a topic",
    (
        "services/wheels.py",
        'filename = unquote(parts.path.rsplit("/", 1)[-1])',
    ): "the file name of a wheel's URL path",
    ("services/wheels.py", 'parts = name.split("/")'): "a member path inside a wheel (zip)",
}

#: An f-string (no spaces) that starts with a branch of the tree after its formatted prefix, or
#: has a wildcard level: a topic being assembled.
_TREE = re.compile(r"^(\{\}/)*(nodes|cameras|zoo|replies)(/|$)|(^|/)[+#](/|$)")


def _text(node: ast.expr) -> str | None:
    """The literal text of a string or f-string (``{}`` for each formatted value)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def hand_parses(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each place ``source`` splits, joins, suffix- or prefix-checks a topic, or
    builds one with an f-string."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = _text(node) or ""
            if not re.search(r"\s", text) and _TREE.search(text):
                yield node.lineno, f"topic assembled in an f-string: {text!r}"
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        arg = _text(node.args[0]) if node.args else None
        if name in ("split", "rsplit", "partition", "rpartition") and arg == "/":
            yield node.lineno, f'.{name}("/")'
        elif name == "join" and _text(node.func.value) == "/":
            yield node.lineno, '"/".join(...)'
        elif arg is None or arg == "/" or "://" in arg:
            continue  # a leading/trailing slash check, a URL scheme
        else:
            suffix = name in ("endswith", "removesuffix") and arg.startswith("/")
            prefix = name in ("startswith", "removeprefix") and arg.endswith("/")
            if suffix or prefix:
                yield node.lineno, f".{name}({arg!r})"


def scan() -> tuple[list[str], set[tuple[str, str]]]:
    """The hand parses found outside the schema, and the allowed ones that were seen."""
    found, seen = [], set()
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in SCHEMA_MODULES:
                continue
            source = path.read_text()
            lines = source.splitlines()
            for line, what in hand_parses(source):
                key = (rel, lines[line - 1].strip())
                if key in ALLOWED:
                    seen.add(key)
                else:
                    found.append(f"{rel}:{line}: {what}: {key[1]}")
    return found, seen


def test_no_topic_is_parsed_or_assembled_by_hand() -> None:
    found, seen = scan()
    assert not found, (
        "use Topics (build/wildcard/the builders) and Topics.parse/try_parse, or allow a use "
        "that is not about topics in ALLOWED with the reason:\n" + "\n".join(found)
    )
    assert seen == set(ALLOWED), f"allowed but no longer there: {set(ALLOWED) - seen}"


BAD = [
    'cam = message.topic.split("/")[-2]',
    'node = topic.rsplit("/", 2)[1]',
    'if message.topic.endswith("/shadow"): pass',
    'name = topic.removeprefix("ovbus/cameras/")',
    'ok = Wildcard(f"{bus.topics.prefix}/replies/+").matches(target)',
    'topic = Topic(f"{p}/cameras/{cam}/detections")',
    'everything = bus.retained(f"{bus.topics.prefix}/#")',
    'topic = "/".join((prefix, "nodes", node, "status"))',
]

GOOD = [
    "cam = bus.topics.parse(message.topic).camera",
    'url = f"rtsp://{host}:{port}/{camera}"',
    'ok = low.startswith("rtsp://") and not value.endswith("/")',
    'note = f"the recipes ({n}, services/zoo/int8.py)"',
    'path = f"{root}/services/zoo/{name}.py"',
    'path = folder / f"{camera}-{n:03d}.jpg"',
    'words = text.split(" ")',
]


def test_the_scan_finds_each_kind_of_hand_parse() -> None:
    for source in BAD:
        assert list(hand_parses(source)), source
    assert list(hand_parses('s = f"{p}/cameras/{c}/x"; t = s.split("/")')) != []
    for source in GOOD:
        assert not list(hand_parses(source)), source
