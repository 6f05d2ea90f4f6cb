"""Local HTTP servers on 127.0.0.1 for the zoo tests.

- :func:`serve_folder`: a plain static file server (what the OMZ storage, a PEP 503 "simple"
  index and a Hugging Face ``resolve`` URL all are: files at paths), optionally throttled;
- :func:`serve_routes`: answers fixed routes (redirects, bodies with or without a length) and
  counts the requests, for the hostile download tests;
- :class:`FakeOvms`: stands in for OpenVINO Model Server's REST config API, which cannot run here
  (no Docker). It speaks the real protocol: ``POST /v1/config/reload`` re-reads config.json and
  answers the config status (or ``{"error": ...}`` with HTTP 400 when the file is not valid),
  ``GET /v1/config`` answers ``{"<model>": {"model_version_status": [{"version": "1", "state":
  "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}]}}``. Like OVMS it loads
  the numbered version folders under each model's base_path (relative to config.json) that hold
  a model file, honouring ``model_version_policy`` (``ovbus.model_repository``, OVMS's rules).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ovbus.errors import StoreError
from ovbus.model_repository import read_config, served_versions


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Slow(_Quiet):
    """Sends files in 64 KiB pieces with a pause between them (a slow uplink)."""

    pause = 0.05

    def copyfile(self, source: Any, outputfile: Any) -> None:
        while block := source.read(64 * 1024):
            try:
                outputfile.write(block)
                outputfile.flush()
            except OSError:
                return
            time.sleep(self.pause)


@contextmanager
def serve_folder(root: Path, *, slow: bool = False) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (``slow``: throttled); yields the base URL."""
    handler = functools.partial(_Slow if slow else _Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass(frozen=True)
class Route:
    """``location``: answer ``status`` (a redirect) with that Location; else ``body``, with a
    Content-Length unless ``length`` is False (then the body ends when the connection closes)."""

    status: int = 200
    location: str | None = None
    body: bytes = b""
    length: bool = True


@dataclass
class Routes:
    url: str
    hits: Counter[str] = field(default_factory=Counter)


@contextmanager
def serve_routes(routes: dict[str, Route]) -> Iterator[Routes]:
    """Serve ``routes`` (path -> :class:`Route`) on 127.0.0.1; unknown paths are 404."""
    served = Routes("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            served.hits[self.path] += 1
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            self.send_response(route.status)
            if route.location is not None:
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.close_connection = True
            self.end_headers()
            try:
                self.wfile.write(route.body)
            except OSError:
                pass  # the client gave up (a size limit): that is the point

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FakeOvms:
    """Stands in for OVMS's REST config API (see the module docstring)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.reloads = 0
        self.status: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if self.path != "/v1/config/reload":
                    self._send(404, {"error": "Not Found"})
                    return
                owner.reloads += 1
                try:
                    owner.load()
                except StoreError:
                    self._send(
                        400,
                        {"error": "Reloading config file failed. Check server logs for more info."},
                    )
                    return
                self._send(201, owner.status)

            def do_GET(self) -> None:
                if self.path != "/v1/config":
                    self._send(404, {"error": "Not Found"})
                    return
                self._send(200, owner.status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def load(self) -> None:
        """Read config.json with OVMS's rules (the one implementation in ovbus): a file that is
        not JSON, or that OVMS's JSON Schema refuses, fails the reload; an entry that does not
        parse is skipped; each model serves what its version policy picks."""
        repo = read_config(self.config)
        if any(p.schema for p in repo.problems):
            raise StoreError("config.json refused by the schema")
        status: dict[str, Any] = {}
        for name, entry in repo.entries.items():
            versions = served_versions(entry.config.model_version_policy, entry.base)
            status[name] = {
                "model_version_status": [
                    {
                        "version": str(v),
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": "OK"},
                    }
                    for v in versions
                ]
                or [
                    {
                        "version": "0",
                        "state": "LOADING",
                        "status": {"error_code": "UNKNOWN", "error_message": "no version found"},
                    }
                ]
            }
        self.status = status

    def __enter__(self) -> FakeOvms:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
