"""pytest fixtures for tests against a real ComfyUI 0.3.75 server (see comfy_harness.py).

Loaded by ``pytest_plugins = ["comfy_fixtures"]`` in conftest.py. The pinned ComfyUI is set up
once per machine (cached), before the first test runs, so no test's timeout has to cover it.
Outside CI a setup that cannot be done (no PyPI, say) skips the ComfyUI tests; in CI it fails.

Fixtures:
- ``comfy_install`` (session): the ComfyInstall (ComfyUI tree, venv, torchvision stub).
- ``comfy_servers`` (session): a factory, ``comfy_servers.start(name, **ComfyServer kwargs)``,
  for tests that need their own server (a clone instead of the symlink, a fake musubi venv in
  ``env``); every server it started is stopped at the end of the session.
- ``comfy_server`` (session): the common server, this checkout symlinked as
  ``custom_nodes/musubi-tuner-nodes``, plus the test-only ``HarnessProbe`` node
  (tests/fixtures/comfy_probe/harness_probe.py).
- ``comfy_client`` (function): a ComfyClient for ``comfy_server`` with a fresh client id.
- ``comfy_cli`` (session): comfy-cli (+ ruff) in its own cached venv, for ``comfy node validate``.
- ``chromium`` (session): a headless Chromium (tests/comfy_browser.py); skipped when it is not
  installed, except in CI (``apt-get install -y chromium``).
- ``comfy_page`` (function): a new tab on ``comfy_server``'s frontend, loaded and ready
  (``window.app`` up, the pack's node definitions registered, first-run dialogs off).
- ``artifacts_dir`` (session): test-artifacts/ (gitignored; MUSUBI_TEST_ARTIFACTS overrides) for
  screenshots.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from comfy_browser import FRONTEND_READY, BrowserError, CdpPage, Chromium, find_chromium
from comfy_harness import (
    PACK_FOLDER_NAME,
    PROJECT_ROOT,
    ComfyCli,
    ComfyClient,
    ComfyInstall,
    ComfyServer,
    ServerFailed,
    SetupFailed,
    ensure_comfy_cli,
    ensure_comfyui,
)

PROBE_NODE = Path(__file__).resolve().parent / "fixtures" / "comfy_probe" / "harness_probe.py"
# The model folders the pack's dropdowns list, and a file each can hold: an empty but valid
# safetensors (8-byte header length, "{}" padded to 8) so dropdowns have values and sniffing passes.
PICKER_FOLDERS = ("diffusion_models", "vae", "text_encoders", "clip_vision")
TINY_SAFETENSORS = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "


def tiny(folder: str) -> str:
    """The tiny model file's name in ``models/<folder>``."""
    return f"tiny_{folder}.safetensors"


def put_tiny_models(server: ComfyServer) -> None:
    """One tiny model file in each of ``server``'s picker folders (kept if already there)."""
    for folder in PICKER_FOLDERS:
        path = server.base_dir / "models" / folder / tiny(folder)
        if not path.exists():
            path.write_bytes(TINY_SAFETENSORS)


def fake_musubi_server(comfy_servers: Any, fake: Any, name: str) -> ComfyServer:
    """A server whose pack runs ``fake`` (the fake musubi venv, tests/fakes.py), with tiny model files."""
    server = comfy_servers.start(name, env={"MUSUBI_TUNER_ROOT": str(fake.root), "MUSUBI_TUNER_ENV": str(fake.venv)})
    put_tiny_models(server)
    return server
COMFY_FIXTURES = ("comfy_install", "comfy_servers", "comfy_server", "comfy_client", "comfy_page")
# what each cached install is, keyed by the fixture that needs it
_INSTALLERS: dict[str, Callable[..., Any]] = {"comfy_install": ensure_comfyui, "comfy_cli": ensure_comfy_cli}
_setup: dict[str, Any] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Set up the cached installs the selected tests need, before any test (and its timeout) runs."""
    if session.config.option.collectonly:
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[comfyui setup] {text}")

    for name in _INSTALLERS:
        if name in wanted and name not in _setup:
            _setup[name] = _attempt(name, say)


def _attempt(name: str, log: Callable[[str], None] | None) -> Any:
    try:
        return _INSTALLERS[name](log=log)
    except (SetupFailed, OSError) as exc:
        return exc  # reported by the fixture, inside a test, as a skip (or a failure in CI)


def _install(name: str) -> Any:
    if name not in _setup:  # the collection hook did not run for it (a plugin loaded late)
        _setup[name] = _attempt(name, None)
    result = _setup[name]
    if isinstance(result, BaseException):
        message = f"{name}: the pinned set-up could not be installed: {result}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return result


@pytest.fixture(scope="session")
def comfy_install() -> ComfyInstall:
    return _install("comfy_install")


@pytest.fixture(scope="session")
def comfy_cli() -> ComfyCli:
    return _install("comfy_cli")


class ServerFactory:
    """Starts named servers in scratch base directories and stops them all at the end."""

    def __init__(self, install: ComfyInstall, root: Path) -> None:
        self.install = install
        self.root = root
        self.servers: dict[str, ComfyServer] = {}

    def start(self, name: str, **kwargs: Any) -> ComfyServer:
        if name in self.servers:
            raise ValueError(f"a server named {name!r} was already started in this session")
        kwargs.setdefault("base_dir", self.root / name)
        server = ComfyServer(self.install, **kwargs)
        self.servers[name] = server
        try:
            server.start()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        return server

    def stop_all(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def comfy_servers(comfy_install: ComfyInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(comfy_install, tmp_path_factory.mktemp("comfyui"))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def comfy_server(comfy_servers: ServerFactory) -> ComfyServer:
    return comfy_servers.start("common", pack_dir=PROJECT_ROOT, folder_name=PACK_FOLDER_NAME,
                               extra_custom_nodes={PROBE_NODE.name: PROBE_NODE})


@pytest.fixture
def comfy_client(comfy_server: ComfyServer) -> ComfyClient:
    return comfy_server.client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, show the log tail of every server the test could have used."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not any(name in getattr(item, "fixturenames", ()) for name in COMFY_FIXTURES):
        return
    factory = item.funcargs.get("comfy_servers") if hasattr(item, "funcargs") else None
    servers = list(factory.servers.values()) if isinstance(factory, ServerFactory) else []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ComfyServer) and value not in servers:
            servers.append(value)
    for server in servers:
        report.sections.append((f"ComfyUI log ({server.base_dir.name})", server.log_tail(60)))
    page = getattr(item, "funcargs", {}).get("comfy_page")
    if isinstance(page, CdpPage):
        report.sections.append(("browser console", "\n".join(page.console[-30:])))
        artifacts = item.funcargs.get("artifacts_dir")
        if isinstance(artifacts, Path):
            with contextlib.suppress(Exception):  # the page may be what broke
                shot = page.screenshot(artifacts / f"failed-{item.name}.png")
                report.sections.append(("browser screenshot", str(shot)))


# ---------------------------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    configured = os.environ.get("MUSUBI_TEST_ARTIFACTS")
    path = Path(configured) if configured else PROJECT_ROOT / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    executable = find_chromium()
    if executable is None:
        message = "Chromium is not installed (Debian: apt-get install -y chromium)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    browser = Chromium(executable, log_path=tmp_path_factory.mktemp("chromium") / "chromium.log")
    try:
        browser.start()
    except BrowserError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield browser
    finally:
        browser.stop()


def pack_node_ids(client: ComfyClient, folder_name: str = PACK_FOLDER_NAME) -> list[str]:
    """Ids of the nodes /object_info lists from the pack loaded as custom_nodes/<folder_name>."""
    module = f"custom_nodes.{folder_name}"
    return sorted(name for name, node in client.object_info().items() if node.get("python_module") == module)


@pytest.fixture
def comfy_page(chromium: Chromium, comfy_server: ComfyServer) -> Iterator[CdpPage]:
    client = comfy_server.client()
    # a first visit opens the template browser over the canvas; a user who closed it once has this set
    client.post("/settings/Comfy.TutorialCompleted", True)
    page = chromium.tab()
    try:
        page.navigate(comfy_server.url)
        page.wait_for(FRONTEND_READY, timeout=60)
        yield page
    finally:
        page.close()
