"""A small driver for headless Debian Chromium over the DevTools protocol (CDP), for browser tests
against the ComfyUI frontend.

Owns: starting Chromium in its own process group with a fresh profile, opening tabs, and the few
CDP calls the tests need (navigate, evaluate JavaScript, wait for a condition, mouse and keys,
screenshots), plus what a user does in ComfyUI's frontend that differs between its versions
(1.32 in ComfyUI 0.3.75, 1.49 in 0.33): closing the announcement banner, the template browser.
Uses websocket-client (the test dependency the API client already needs); no npm, no browser
download. Imports nothing of the pack or of ComfyUI.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

# Debian's package installs /usr/bin/chromium; CHROMIUM overrides it.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
# The network here is closed: background services would retry refused connections all the time.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium did not start, a CDP call failed, or a page condition was not met in time."""


def find_chromium() -> str | None:
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless Chromium process; a context manager. `tab()` opens a new CdpPage."""

    def __init__(self, executable: str, *, window_size: tuple[int, int] = (1440, 900),
                 log_path: Path | None = None, startup_timeout: float = 30.0) -> None:
        self.executable = executable
        self.window_size = window_size
        self.profile = Path(tempfile.mkdtemp(prefix="musubi-chromium-"))
        self.log_path = log_path or self.profile / "chromium.log"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self) -> "Chromium":
        argv = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                f"--window-size={self.window_size[0]},{self.window_size[1]}", "about:blank"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        # Chromium writes the port it picked (with --remote-debugging-port=0) into the profile.
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.port = int(active.read_text().splitlines()[0])
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BrowserError(f"chromium did not open its DevTools port within {self.startup_timeout:.0f} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _json(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def tab(self, url: str = "about:blank") -> "CdpPage":
        """A new tab, connected; close it with `page.close()` (or use it as a context manager)."""
        target = self._json("/json/new?" + urllib.request.quote(url, safe=":/?&=#"), method="PUT")
        return CdpPage(self, target["id"], target["webSocketDebuggerUrl"])


class CdpPage:
    """One tab over CDP. Calls are synchronous; events are buffered in `events`."""

    def __init__(self, browser: Chromium, target_id: str, ws_url: str) -> None:
        import websocket  # websocket-client, a test dependency

        self._ws_module = websocket
        self.browser = browser
        self.target_id = target_id
        # Chromium refuses DevTools websockets that carry an Origin header it does not allow.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.console: list[str] = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        width, height = browser.window_size
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        with contextlib.suppress(Exception):
            self.browser._json(f"/json/close/{self.target_id}")

    def __enter__(self) -> "CdpPage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        self.ws.settimeout(max(timeout, 0.01))
        try:
            message = json.loads(self.ws.recv())
        except self._ws_module.WebSocketTimeoutException:
            return None
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif message["method"] == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.console.append("exception: " + str(details.get("exception", {}).get("description",
                                                                                        details.get("text"))))
        return message

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} within {timeout:.0f} s")
            message = self._receive(remaining)
            if message is not None and message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_event(self, method: str, timeout: float = 30.0,
                   predicate: Callable[[dict[str, Any]], bool] = lambda params: True) -> dict[str, Any]:
        seen = len(self.events)
        for event in self.events[:seen]:
            if event["method"] == method and predicate(event["params"]):
                return event["params"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message and message.get("method") == method and predicate(message["params"]):
                return message["params"]
        raise BrowserError(f"no {method} event within {timeout:.0f} s")

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        self.events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, *, await_promise: bool = True, timeout: float = 30.0) -> Any:
        """The JSON value of a JavaScript expression (a promise is awaited); raises on a JS error."""
        result = self.send("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True,
                           awaitPromise=await_promise, userGesture=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error in {expression[:200]!r}: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.2, *,
                 value: bool = False) -> Any:
        """Poll `expression` until it is truthy. Returns True, or with ``value=True`` its JSON value
        (then it must be serialisable: CDP refuses e.g. the graph object, "reference chain too long")."""
        checked = expression if value else f"!!({expression})"
        deadline = time.monotonic() + timeout
        last_error: BrowserError | None = None
        while time.monotonic() < deadline:
            try:
                result = self.evaluate(checked, timeout=max(1.0, deadline - time.monotonic()))
                if result:
                    return result
                last_error = None
            except BrowserError as exc:  # e.g. the app object does not exist yet
                last_error = exc
            # drain events meanwhile so the socket buffer does not grow
            self._receive(interval)
        console = "\n".join(self.console[-15:])
        raise BrowserError(f"{expression[:200]!r} not truthy within {timeout:.0f} s"
                           f"{f' (last error: {last_error})' if last_error else ''}\nconsole:\n{console}")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # -- input -------------------------------------------------------------------------------

    def click(self, x: float, y: float, *, button: str = "left", count: int = 1) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for click in range(1, count + 1):
            self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button=button, clickCount=click)
            self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button=button, clickCount=click)

    def type_text(self, text: str) -> None:
        self.send("Input.insertText", text=text)

    def press_key(self, key: str, code: str | None = None, key_code: int | None = None) -> None:
        """A named key, e.g. press_key("Enter", "Enter", 13) or press_key("Escape", "Escape", 27)."""
        params: dict[str, Any] = {"key": key, "code": code or key}
        if key_code is not None:
            params["windowsVirtualKeyCode"] = key_code
        self.send("Input.dispatchKeyEvent", type="keyDown", **params)
        self.send("Input.dispatchKeyEvent", type="keyUp", **params)


# -- ComfyUI's frontend --------------------------------------------------------------------------

# The frontend is ready when its app object has a graph, the node definitions are registered and
# the first workflow tab is open: until then frontend 1.49 (ComfyUI 0.33) ignores clicks on the
# canvas and the sidebar (about 0.5 s after the rest).
FRONTEND_READY = ("window.app && window.app.vueAppReady && window.app.graph && window.LiteGraph"
                  " && Object.keys(LiteGraph.registered_node_types).length > 0"
                  " && (!app.extensionManager?.workflow || !!app.extensionManager.workflow.activeWorkflow)")
TEMPLATES_BUTTON = "button.templates-tab-button"  # the sidebar's Templates button (1.32 and 1.49)
TEMPLATES_OPEN = "!!document.querySelector('[data-testid=template-workflows-content]')"


def center(page: CdpPage, selector: str) -> tuple[float, float]:
    """Where a real click on the element lands (its centre, in CSS pixels)."""
    box = page.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                        " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    return box[0], box[1]


def dismiss_banner(page: CdpPage) -> None:
    """Close the frontend's "Nodes 2.0" announcement, which covers the top of every screenshot."""
    page.evaluate("document.querySelector('.bg-gradient-to-r button.absolute')?.click()")


def open_template(page: CdpPage, name: str, node_types: list[str], shot: Path | None = None) -> None:
    """Open the template browser from the sidebar, wait for the card of template `name` (and its
    thumbnail), click it and wait until the canvas holds exactly ``node_types``.

    Both frontends name the browser ``template-workflows-content`` and a card
    ``template-workflow-<name>``. Frontend 1.49 lets a click on the Templates button soon after
    the app is ready pass without opening the browser (its start-up work still runs; a later
    click opens it), so the button is clicked again, as a user would, until the browser shows."""
    for attempt in range(4):
        page.click(*center(page, TEMPLATES_BUTTON))
        try:
            page.wait_for(TEMPLATES_OPEN, timeout=5 if attempt < 3 else 20)
            break
        except BrowserError:
            if attempt == 3:
                raise
    card = f'[data-testid="template-workflow-{name}"]'
    page.wait_for(f"document.querySelector({json.dumps(card)})", timeout=20)
    page.wait_for(f"(() => {{ const img = document.querySelector({json.dumps(card + ' img')});"
                  " return img && img.complete && img.naturalWidth > 0; })()", timeout=20)
    if shot is not None:
        page.screenshot(shot)
    page.click(*center(page, card))
    page.wait_for(f"!({TEMPLATES_OPEN})", timeout=20)
    as_js = json.dumps(json.dumps(sorted(node_types), separators=(",", ":")))  # the string JSON.stringify gives
    page.wait_for(f"JSON.stringify(app.graph._nodes.map(n => n.type).sort()) === {as_js}", timeout=20)
