"""Fixtures: a real `steward serve` with a manager made by the operator CLI, and headless
Chromium (Debian's, never a downloaded one) driven by Playwright.

Environment:
  STEWARD_BIN                  the steward binary (default: <repo>/target/debug/steward)
  STEWARD_PORTAL_DATABASE_URL  a fresh PostgreSQL database to use (default: a new SQLite file)
  STEWARD_PORTAL_SCREENSHOTS   where screenshots of the main pages go
                               (default: <repo>/target/portal-screenshots/<sqlite|postgres>)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
STEWARD_BIN = os.environ.get("STEWARD_BIN", str(REPO / "target" / "debug" / "steward"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_SECONDS = 20.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0
PASSWORD = "correct horse battery"

# Rates no balance, count or date could show by chance; scanned for on every page a managed
# account (or its manager acting as it) can see.
PRICES = """product,prefix,rate,initial_increment_s,subsequent_increment_s
voice_outbound,,0.0137,30,6
voice_inbound,,0.0029,1,1
sms_outbound,,0.00731,,
mms_outbound,,0.0419,,
number_rental,,7.13,,
"""


@dataclass(frozen=True)
class Manager:
    id: str
    email: str
    api_key: str


class Steward:
    """The running server and its operator CLI."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.base_url = ""
        self.ingest_key = ""

    def admin(self, *args: str, stdin: str | None = None) -> dict:
        command = [STEWARD_BIN, "admin", *args, "--database-url", self.database_url]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, input=stdin
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def api(self, method: str, path: str, key: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url(path),
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_live(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"steward serve exited:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"steward serve not live:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from_env = os.environ.get("STEWARD_PORTAL_DATABASE_URL")
    if from_env:
        return from_env
    return f"sqlite://{tmp_path_factory.mktemp('steward') / 'steward.db'}"


@pytest.fixture(scope="session")
def screenshots(database_url: str) -> Path:
    backend = "postgres" if database_url.startswith("postgres") else "sqlite"
    folder = Path(
        os.environ.get(
            "STEWARD_PORTAL_SCREENSHOTS", REPO / "target" / "portal-screenshots" / backend
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    print(f"\nScreenshots of the portal: {folder}")
    return folder


@pytest.fixture(scope="session")
def steward(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Steward]:
    handle = Steward(database_url)
    prices = tmp_path_factory.mktemp("prices") / "prices.csv"
    prices.write_text(PRICES)
    handle.admin(
        "import-price-list", "--file", str(prices), "--name", "Portal test prices",
        "--platform-default", "--effective-from", "2020-01-01T00:00:00Z",
    )
    handle.ingest_key = handle.admin("create-ingest-key")["api_key"]
    port = _free_port()
    log_path = tmp_path_factory.mktemp("steward-log") / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [STEWARD_BIN, "serve", "--listen", f"127.0.0.1:{port}",
             "--database-url", database_url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_live(process, port, log_path)
        handle.base_url = f"http://127.0.0.1:{port}"
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def manager(steward: Steward) -> Manager:
    """A manager made by the operator, its password read from standard input."""
    email = f"mgr-{uuid.uuid4().hex[:10]}@reseller.example"
    created = steward.admin(
        "create-account", "--email", email, "--business-name", "Reseller Ltd",
        "--manager", "--allocatable-channels", "20", "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert created["password_set"] is True
    return Manager(id=created["id"], email=created["email"], api_key=created["api_key"])


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies), failing the test on any page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda message: errors.append(message.text)
        if message.type == "error" and "Content Security Policy" in message.text
        else None,
    )
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def sign_in(page: Page, steward: Steward, email: str, password: str = PASSWORD) -> None:
    page.goto(steward.url("/sign-in"))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
