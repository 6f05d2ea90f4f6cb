"""Hostile downloads: the zoo's URL fetcher (``services/http.py``) against URLs and servers that
try to reach what they should not.

- hosts that resolve to loopback, private, shared or reserved addresses are refused unless
  ``allow_private_hosts`` is on; link-local (cloud metadata), multicast and unspecified
  addresses always; the check needs no connection (IP literals and ``localhost``);
- every redirect is checked again: other schemes, refused hosts and redirect loops stop the
  download before anything is fetched from the new target;
- a body over the size limit is refused, whether the server announces it or not;
- the test servers run on 127.0.0.1, so these tests turn ``allow_private`` on, except the one
  that shows that with it off a loopback URL is refused before any request is made.
A refused download leaves no file behind. One test goes through the zoo worker on the bus."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, FetchError
from ovbus.payloads.zoo import PullRequest, UrlSource
from services import http
from services.zoo import sources
from tests.models import BLAZEFACE
from tests.zoo.conftest import Worker, import_dir, site, snapshot, worker, zoo_settings
from tests.zoo.servers import Route, serve_routes

__all__ = ["import_dir", "site", "worker", "zoo_settings"]

BODY = b"\x00onnx-bytes\x00" * 100


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/x.onnx", "loopback"),
        ("http://localhost:8000/x.onnx", "loopback"),
        ("http://127.1/x.onnx", "loopback"),  # short form
        ("http://2130706433/x.onnx", "loopback"),  # 127.0.0.1 as one number
        ("http://[::1]/x.onnx", "loopback"),
        ("http://[::ffff:127.0.0.1]/x.onnx", "loopback"),  # IPv4-mapped
        ("http://10.1.2.3/x.onnx", "private"),
        ("http://172.16.0.9/x.onnx", "private"),
        ("http://192.168.1.20/x.onnx", "private"),
        ("http://[fc00::1]/x.onnx", "private"),
        ("http://100.64.0.1/x.onnx", "not a public address"),  # carrier-grade NAT
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x.onnx", "link-local"),
        ("http://0.0.0.0/x.onnx", "unspecified"),
        ("http://224.0.0.1/x.onnx", "multicast"),
    ],
)
def test_non_public_hosts_are_refused(url: str, why: str) -> None:
    with pytest.raises(FetchError) as info:
        http.check_url(url)
    assert info.value.code == ErrorCode.FORBIDDEN_PATH
    assert why in info.value.message


@pytest.mark.parametrize(
    "url", ["https://169.254.169.254/", "http://[fe80::1]/", "http://0.0.0.0/", "http://239.1.1.1/"]
)
def test_link_local_multicast_and_unspecified_are_refused_even_when_private_hosts_are_allowed(
    url: str,
) -> None:
    with pytest.raises(FetchError) as info:
        http.check_url(url, allow_private=True)
    assert info.value.code == ErrorCode.FORBIDDEN_PATH


def test_public_addresses_and_lan_hosts_when_allowed_pass_the_check() -> None:
    # checked only (IP literals resolve without any lookup): nothing is fetched
    assert http.check_url("https://8.8.8.8/x.onnx") == "https://8.8.8.8/x.onnx"
    assert http.check_url("https://[2001:4860:4860::8888]/x.onnx")
    assert http.check_url("http://192.168.1.20/simple/", allow_private=True)
    for bad in ("file:///etc/passwd", "ftp://8.8.8.8/x", "gopher://8.8.8.8/", "http:///x"):
        with pytest.raises(FetchError):
            http.check_url(bad)


def test_loopback_is_refused_with_the_setting_off_before_any_request(tmp_path: Path) -> None:
    with serve_routes({"/x.onnx": Route(body=BODY)}) as server:
        url = f"{server.url}/x.onnx"
        with pytest.raises(FetchError) as info:
            http.download(url, tmp_path / "x.onnx")
        assert info.value.code == ErrorCode.FORBIDDEN_PATH
        assert "OVBUS_ZOO_ALLOW_PRIVATE_HOSTS" in info.value.message
        # through the zoo's URL source with the worker's setting off: the same
        ctx = sources.Context("", "", "", tmp_path / "cache", (), allow_private=False)
        dest = tmp_path / "staging"
        dest.mkdir()
        with pytest.raises(FetchError, match="loopback"):
            sources.from_url(UrlSource(url=url), ctx, dest, None)
        assert list(dest.iterdir()) == [] and not (tmp_path / "x.onnx").exists()
        assert server.hits == {}, "a refused URL must not be requested at all"
        # on: the same URL downloads
        http.download(url, tmp_path / "x.onnx", allow_private=True)
        assert (tmp_path / "x.onnx").read_bytes() == BODY


def test_every_redirect_is_checked_again(tmp_path: Path) -> None:
    routes = {
        "/x.onnx": Route(body=BODY),
        "/chain/1": Route(302, "/chain/2"),
        "/chain/2": Route(301, "/chain/3"),
        "/chain/3": Route(307, "/x.onnx"),
        "/to-file": Route(302, "file:///etc/passwd"),
        "/to-ftp": Route(302, "ftp://8.8.8.8/x.onnx"),
        "/to-metadata": Route(302, "http://169.254.169.254/latest/meta-data/"),
        "/to-link-local-v6": Route(308, "http://[fe80::1]/x.onnx"),
        "/to-unspecified": Route(303, "http://0.0.0.0/x.onnx"),
        "/loop": Route(302, "/loop"),
    }
    with serve_routes(routes) as server:
        dest = tmp_path / "got.onnx"
        http.download(f"{server.url}/chain/1", dest, allow_private=True)
        assert dest.read_bytes() == BODY  # a chain of allowed redirects is followed
        dest.unlink()
        refused = {
            "/to-file": "file URLs are not downloads",
            "/to-ftp": "is not an http(s) URL",
            "/to-metadata": "169.254.169.254 is a link-local address",
            "/to-link-local-v6": "fe80::1 is a link-local address",
            "/to-unspecified": "0.0.0.0 is an unspecified address",
        }
        for path, why in refused.items():
            with pytest.raises(FetchError) as info:
                http.download(f"{server.url}{path}", dest, allow_private=True)
            assert why in info.value.message and "redirect from" in info.value.message, path
            assert not dest.exists()
        with pytest.raises(FetchError, match="a redirect loop, or more than 5 redirects"):
            http.download(f"{server.url}/loop", dest, allow_private=True)
        assert not dest.exists()
        assert server.hits["/loop"] <= http.MAX_REDIRECTS + 1
        # the zoo's index pages and Hub answers go through the same checks
        with pytest.raises(FetchError, match="file URLs"):
            http.get_json(f"{server.url}/to-file", allow_private=True)


def test_size_limit_announced_or_not(tmp_path: Path) -> None:
    big = b"\x01" * (3 * 1024 * 1024)
    routes = {
        "/announced.onnx": Route(body=big),
        "/unannounced.onnx": Route(body=big, length=False),
    }
    limit = 1024 * 1024
    with serve_routes(routes) as server:
        dest = tmp_path / "big.onnx"
        for path in routes:
            with pytest.raises(FetchError) as info:
                http.download(f"{server.url}{path}", dest, max_bytes=limit, allow_private=True)
            assert info.value.code == ErrorCode.TOO_LARGE
            assert f"larger than the limit of {limit} bytes" in info.value.message
            assert not dest.exists()
        # the worker's limit (OVBUS_ZOO_MAX_DOWNLOAD) reaches its URL source
        ctx = sources.Context("", "", "", tmp_path / "c", (), allow_private=True, max_bytes=limit)
        staging = tmp_path / "staging"
        staging.mkdir()
        with pytest.raises(FetchError, match="larger than the limit"):
            sources.from_url(UrlSource(url=f"{server.url}/unannounced.onnx"), ctx, staging, None)
        assert list(staging.iterdir()) == []


@pytest.mark.slow
def test_zoo_refuses_a_redirect_out_and_changes_nothing(worker: Worker, client: Bus) -> None:
    """Through the bus: a pull whose URL redirects to a file URL, then the same pull with the
    worker's setting off, are refused with a clear error; the models folder is unchanged."""
    before = snapshot(worker.zoo.folder.root)
    with serve_routes({"/face.tflite": Route(302, "file:///etc/passwd")}) as server:
        pull = PullRequest(
            name="face", source=UrlSource(url=f"{server.url}/face.tflite"), convert=False,
            description=BLAZEFACE,
        )  # fmt: skip
        reply = client.request(client.topics.zoo_request(), pull, timeout=30)
        assert not reply.ok and reply.error is not None
        assert reply.error.code == ErrorCode.FORBIDDEN_PATH
        assert (
            "redirect from" in reply.error.message and "file:///etc/passwd" in reply.error.message
        )
        worker.zoo.ctx = dataclasses.replace(worker.zoo.ctx, allow_private=False)
        reply = client.request(client.topics.zoo_request(), pull, timeout=30)
        assert not reply.ok and reply.error is not None
        assert "loopback" in reply.error.message
        assert server.hits["/face.tflite"] == 1  # the second pull never reached the server
    assert snapshot(worker.zoo.folder.root) == before
