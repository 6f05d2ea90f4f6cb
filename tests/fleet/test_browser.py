"""The notebooks as a person meets them: ``make demo`` prints a JupyterLab URL, and a real browser
(Debian's Chromium, driven by Playwright's async API) opens it, opens a notebook from the file
browser, runs all cells and looks at the page: the live image changes and has the detection boxes
drawn over the faces the model found, the plot renders, no cell shows an error; the fleet notebook
lists the demo camera and model; a wrong token gets the login page. Then Ctrl-C stops JupyterLab
with the rest.

Playwright drives ``/usr/bin/chromium`` (``executable_path``): it cannot download its own browser
here. Screenshots of every page are written to the folder named in any failure message.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from playwright.async_api import Browser, Page, async_playwright

from ovbus.bus import Bus
from ovbus.messages import Message
from ovbus.payloads import DetectionResult
from services.mosquitto import free_port
from services.zoo.catalog import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: screenshots of each test's pages (kept: pytest's own temporary folders rotate away)
ARTIFACTS = ROOT / ".cache" / "test-artifacts" / "browser"
#: the live view's length in the notebooks (they read it from the environment the demo passes on)
SECONDS = 12
#: ovbus.draw's colour for the first label (BGR, here green)
BOX_BGR = (0, 255, 0)
URL = re.compile(r"^JupyterLab: (http://\S+/lab\?token=[0-9a-f]+)\s*$")
BROKER = re.compile(r"^broker: (mqtt://\S+)")
#: the notebook in the front tab (JupyterLab restores earlier tabs, hidden)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
Image = npt.NDArray[np.uint8]

pytestmark = pytest.mark.slow


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    output: Path
    lines: list[str] = field(default_factory=list)
    url: str = ""
    broker: str = ""
    results: list[DetectionResult] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    def text(self) -> str:
        logs = "".join(p.read_text()[-1500:] for p in sorted(self.output.glob("**/*.log")))
        return "\n".join(self.lines[-60:]) + "\n" + logs

    def stop(self) -> int:
        """Ctrl-C, as a person stops the demo."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _read(demo: Demo) -> None:
    assert demo.proc.stdout is not None
    for line in demo.proc.stdout:
        demo.lines.append(line.rstrip("\n"))


def _notebook_hashes() -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (ROOT / "notebooks").glob("*.ipynb")
    }


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """``make demo`` itself (headless), with JupyterLab on a free port; its notebooks run
    ``SECONDS`` of live view. Autosave is off in this JupyterLab so the project's notebooks stay
    as committed (checked at the end)."""
    output = ARTIFACTS / "demo"  # its logs (JupyterLab's too) stay for a failure's reader
    shutil.rmtree(output, ignore_errors=True)
    autosave = (
        output / "jupyter/config/lab/user-settings/@jupyterlab/docmanager-extension"
        "/plugin.jupyterlab-settings"
    )
    autosave.parent.mkdir(parents=True)
    autosave.write_text('{"autosave": false}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVBUS_", "JUPYTER"))}
    env["OVBUS_NOTEBOOK_SECONDS"] = str(SECONDS)
    before = _notebook_hashes()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--headless",
            "--duration",
            "600",
            "--output",
            str(output),
            "--jupyter-port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Demo(proc, output)
    reader = threading.Thread(target=_read, args=(running,), daemon=True)
    reader.start()
    bus: Bus | None = None
    try:
        deadline = time.monotonic() + 300
        while not running.url:
            assert proc.poll() is None, f"the demo exited:\n{running.text()}"
            assert time.monotonic() < deadline, f"no JupyterLab URL printed:\n{running.text()}"
            for line in list(running.lines):
                if (m := BROKER.match(line)) and not running.broker:
                    running.broker = m.group(1)
                if m := URL.match(line):
                    running.url = m.group(1)
            time.sleep(0.2)
        bus = Bus(running.broker, prefix="ovbus").connect(timeout=10)

        def keep(message: Message) -> None:
            running.results.append(message.decode(DetectionResult))

        bus.subscribe(bus.topics.detections("demo"), qos=0, callback=keep)
        yield running
    finally:
        if bus is not None:
            bus.close()
        running.stop()
        reader.join(10)  # the demo's output ends with it: then the pipe is closed, not leaked
        if proc.stdout is not None:
            proc.stdout.close()
    assert _notebook_hashes() == before, "running the notebooks changed the files in notebooks/"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The event loop Playwright's async API runs on, the test's own thread. The sync API is not
    used: it switches greenlets under the test's other threads (the bus, the demo's reader), and
    one CI run died of a segmentation fault in this module."""
    running = asyncio.new_event_loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser(loop: asyncio.AbstractEventLoop) -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium"
    )
    driver = loop.run_until_complete(async_playwright().start())
    try:
        chromium = loop.run_until_complete(
            driver.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        )
        yield chromium
        loop.run_until_complete(chromium.close())
    finally:
        loop.run_until_complete(driver.stop())


@dataclass
class Tab:
    page: Page
    shots: Path

    @asynccontextmanager
    async def on_failure(self, what: str) -> AsyncIterator[None]:
        """Screenshot the page when a check fails, and say where it is."""
        try:
            yield
        except Exception as e:
            await self.page.screenshot(path=str(self.shots / f"{what}.png"), full_page=True)
            raise AssertionError(f"{what}: {e}\nscreenshots in {self.shots}/") from e


@pytest.fixture
def tab(
    loop: asyncio.AbstractEventLoop, browser: Browser, demo: Demo, request: pytest.FixtureRequest
) -> Iterator[Tab]:
    """A browser tab; its last screenshot is kept with the others, in the folder failures name."""
    context = loop.run_until_complete(browser.new_context(viewport={"width": 1400, "height": 1000}))
    context.set_default_timeout(60_000)
    shots = ARTIFACTS / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    try:
        page = loop.run_until_complete(context.new_page())
        yield Tab(page, shots)
        loop.run_until_complete(page.screenshot(path=str(shots / "end.png"), full_page=True))
    finally:
        loop.run_until_complete(context.close())


async def open_notebook(page: Page, demo: Demo, name: str) -> None:
    await page.goto(demo.url)
    item = page.locator(".jp-DirListing-item", has_text=name)
    await item.wait_for()
    await item.dblclick()
    await page.locator(f"{PANEL} .jp-Cell").first.wait_for()
    await page.get_by_text("Python 3 (ipykernel) | Idle").wait_for()


async def run_all(page: Page) -> None:
    await page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    await page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


async def wait_finished(page: Page, timeout: float) -> list[str]:
    """Wait until every code cell has run (an execution count, no ``[*]``); their prompts."""
    prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + timeout
    while True:
        texts = [t.strip() for t in await prompts.all_inner_texts()]
        if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts):
            return texts
        dialogs = await page.locator(".jp-Dialog").all_inner_texts()
        assert not any("Kernel Restarting" in d for d in dialogs), (
            f"the kernel died (see the demo's jupyter/jupyterlab.log); cells: {texts}"
        )
        assert time.monotonic() < deadline, (
            f"cells still running or not run: {texts}; errors shown: {await errors_shown(page)}"
        )
        await page.wait_for_timeout(500)


async def errors_shown(page: Page) -> list[str]:
    """Text of every error or stderr output in the open notebook."""
    found = page.locator(
        f'{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    )
    return await found.all_inner_texts()


async def pixels(page: Page, selector: str) -> Image:
    """The image element's pixels as the browser decoded them, at its natural size (BGR). The
    browser hands over its raw RGBA pixels, so nothing here decodes an image (the test process
    died once of a segmentation fault inside ``cv2.imdecode`` of the PNG it used to get). The
    widget sets a new ``src`` for each frame, and until the browser has loaded it the element has
    no pixels (``naturalWidth`` 0): the look waits for a loaded frame, 10 s at most."""
    width, height, data = await page.locator(selector).first.evaluate(
        """async img => {
            const deadline = performance.now() + 10000;
            while (!(img.complete && img.naturalWidth > 0) && performance.now() < deadline) {
                await new Promise(r => setTimeout(r, 20));
            }
            if (!(img.complete && img.naturalWidth > 0)) return [0, 0, ''];
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d');
            g.drawImage(img, 0, 0);
            const rgba = g.getImageData(0, 0, c.width, c.height).data;
            let text = '';
            for (let i = 0; i < rgba.length; i += 0x8000) {
                text += String.fromCharCode.apply(null, rgba.subarray(i, i + 0x8000));
            }
            return [c.width, c.height, btoa(text)];
        }"""
    )
    assert width > 0 and height > 0, "the live image is empty"
    rgba = np.frombuffer(base64.b64decode(data), np.uint8)
    assert rgba.size == width * height * 4, (rgba.size, width, height)
    return np.ascontiguousarray(rgba.reshape(height, width, 4)[:, :, 2::-1])


def box_colour(image: Image) -> npt.NDArray[np.bool_]:
    """Where the image has the box colour, give or take what JPEG does to a 2-pixel line."""
    distance = np.abs(image.astype(int) - np.array(BOX_BGR)).max(axis=2)
    return np.asarray(distance <= 110, dtype=np.bool_)


def box_drawn(mask: npt.NDArray[np.bool_], result: DetectionResult, label: str) -> float:
    """The best share of a ``label`` box's outline (in image pixels) that has the box colour."""
    h, w = mask.shape
    sx, sy = w / result.width, h / result.height
    best = 0.0
    for obj in result.objects:
        if obj.label != label:
            continue
        x1, y1, x2, y2 = (round(v * s) for v, s in zip(obj.box, (sx, sy, sx, sy), strict=True))
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        if x2 - x1 < 8 or y2 - y1 < 8:
            continue
        # each point of the outline: the box colour within 2 pixels across the line
        top = mask[max(0, y1 - 2) : y1 + 3, x1:x2].any(axis=0)
        bottom = mask[max(0, y2 - 2) : y2 + 3, x1:x2].any(axis=0)
        left = mask[y1:y2, max(0, x1 - 2) : x1 + 3].any(axis=1)
        right = mask[y1:y2, max(0, x2 - 2) : x2 + 3].any(axis=1)
        outline = np.concatenate([top, bottom, left, right])
        best = max(best, float(outline.mean()))
    return best


def test_face_detection_notebook_shows_live_boxes_on_faces(
    loop: asyncio.AbstractEventLoop, tab: Tab, demo: Demo
) -> None:
    loop.run_until_complete(_face_detection_notebook(tab, demo))


async def _face_detection_notebook(tab: Tab, demo: Demo) -> None:
    page = tab.page
    live = f"{PANEL} img.widget-image"
    async with tab.on_failure("open"):
        await open_notebook(page, demo, "face-detection.ipynb")
        await run_all(page)
        await page.locator(live).first.wait_for(state="visible")
        await page.wait_for_function(
            "s => { const i = document.querySelector(s); return i && i.naturalWidth > 0 }",
            arg=live,
        )
    samples: list[tuple[Image, list[DetectionResult]]] = []
    async with tab.on_failure("live view"):
        start = time.monotonic()
        while time.monotonic() - start < SECONDS / 2:
            image = await pixels(page, live)
            samples.append((image, demo.results[-40:]))
            await page.wait_for_timeout(700)
        await page.locator(live).first.screenshot(path=str(tab.shots / "live.png"))
        assert len(samples) >= 3, "too few looks at the live image"
        first, last = samples[0][0].astype(int), samples[-1][0].astype(int)
        assert first.shape == last.shape
        assert np.abs(first - last).mean() > 2.0, "the live image does not change"
        drawn = []
        for image, recent in samples:
            mask = box_colour(image)
            assert mask.mean() < 0.05, "the box colour is all over the image, not in boxes"
            drawn.append(max((box_drawn(mask, r, "face") for r in recent), default=0.0))
        # the box drawn is the one of a recent result: its outline has the box colour
        assert max(drawn) >= 0.6, f"no face box drawn on the live image: outline shares {drawn}"
        assert sum(d >= 0.6 for d in drawn) >= len(drawn) // 2, drawn
    async with tab.on_failure("run all"):
        prompts = await wait_finished(page, SECONDS + 90)
        assert len(prompts) == 5, prompts
        shown = await errors_shown(page)
        assert not shown, shown
        plot = page.locator(f'{PANEL} .jp-OutputArea-output[data-mime-type="image/png"] img')
        assert await plot.count() == 1, "the plot cell shows no figure"
        await plot.scroll_into_view_if_needed()
        assert await plot.evaluate("img => img.naturalWidth") > 300
        assert "with a detection" in await page.locator(PANEL).inner_text()


def test_fleet_notebook_lists_the_demo_camera_and_model(
    loop: asyncio.AbstractEventLoop, tab: Tab, demo: Demo
) -> None:
    loop.run_until_complete(_fleet_notebook(tab, demo))


async def _fleet_notebook(tab: Tab, demo: Demo) -> None:
    page = tab.page
    async with tab.on_failure("fleet"):
        await open_notebook(page, demo, "fleet.ipynb")
        await run_all(page)
        await wait_finished(page, SECONDS + 90)
        shown = await errors_shown(page)
        assert not shown, shown
        cameras = page.locator(f"{PANEL} h4:text-is('Cameras') + table").first
        await cameras.scroll_into_view_if_needed()
        assert "demo" in await cameras.locator("td").all_inner_texts()
        rows = page.locator(f"{PANEL} h4:text-is('Models') + table tr")
        models = {}
        for row in await rows.all():
            cells = await row.locator("td").all_inner_texts()
            if cells:
                models[cells[0]] = cells
        assert DEFAULT_MODEL in models, models
        assert "ready" in models[DEFAULT_MODEL], models
        assert "nodes reported stats" in await page.locator(PANEL).inner_text()


def test_a_wrong_token_gets_the_login_page(
    loop: asyncio.AbstractEventLoop, tab: Tab, demo: Demo
) -> None:
    loop.run_until_complete(_wrong_token(tab, demo))


async def _wrong_token(tab: Tab, demo: Demo) -> None:
    page = tab.page
    async with tab.on_failure("wrong token"):
        await page.goto(re.sub(r"token=[0-9a-f]+", "token=" + "0" * 32, demo.url))
        await page.locator("input[type=password]").first.wait_for()
        assert await page.locator(".jp-DirListing-item").count() == 0


def test_ctrl_c_stops_jupyterlab_with_the_rest(demo: Demo) -> None:
    port = demo.port
    code = demo.stop()
    assert code == 0, demo.text()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "JupyterLab still listening"
    left = _processes_of(demo.output / "jupyter" / "stack.json")
    assert not left, f"JupyterLab or its kernels left running: {left}"


def _processes_of(stack_file: Path) -> list[int]:
    """Processes whose environment names this stack file (the server and its kernels)."""
    marker = f"JUPYTER_OVBUS_STACK={stack_file}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
