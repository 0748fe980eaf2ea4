"""Fixtures that run a real `steward serve` process and point the official Telnyx SDK at it.

Environment:
  STEWARD_BIN               the steward binary (default: <repo>/target/debug/steward)
  STEWARD_SDK_DATABASE_URL  a fresh PostgreSQL database to use (default: a new SQLite file)
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
from typing import Callable, Iterator

import pytest
import telnyx

REPO = Path(__file__).resolve().parents[2]
STEWARD_BIN = os.environ.get("STEWARD_BIN", str(REPO / "target" / "debug" / "steward"))

MANAGER_CHANNEL_POOL = 20
STARTUP_TIMEOUT_SECONDS = 20.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Manager:
    """A manager account created through the operator CLI."""

    id: str
    email: str
    api_key: str


class Steward:
    """A handle on the running server and on its operator CLI."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.base_url = ""

    def admin(self, *args: str) -> dict:
        """Run `steward admin ...` and return the JSON object it prints."""
        command = [STEWARD_BIN, "admin", *args, "--database-url", self.database_url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return json.loads(done.stdout)

    def create_manager(self) -> Manager:
        # 12 hex digits at most: a longer random run of digits can read as a card number,
        # which every free-text field refuses.
        email = f"mgr-{uuid.uuid4().hex[:12]}@reseller.example"
        created = self.admin(
            "create-account",
            "--email", email,
            "--business-name", f"Reseller {email}",
            "--manager",
            "--allocatable-channels", str(MANAGER_CHANNEL_POOL),
        )
        assert created["email"] == email
        return Manager(id=created["id"], email=created["email"], api_key=created["api_key"])

    def client(self, api_key: str) -> telnyx.Telnyx:
        return telnyx.Telnyx(
            api_key=api_key,
            base_url=self.base_url,
            _strict_response_validation=True,
            max_retries=0,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_live(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"steward serve exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1) as response:
                if json.load(response) == {"status": "ok"}:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"steward serve not live after {STARTUP_TIMEOUT_SECONDS}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    from_env = os.environ.get("STEWARD_SDK_DATABASE_URL")
    if from_env:
        return from_env
    return f"sqlite://{tmp_path_factory.mktemp('steward') / 'steward.db'}"


@pytest.fixture(scope="session")
def steward_handle(database_url: str) -> Steward:
    return Steward(database_url)


@pytest.fixture(scope="session")
def manager(steward_handle: Steward) -> Manager:
    """The main manager, created before the server starts."""
    return steward_handle.create_manager()


@pytest.fixture(scope="session")
def steward(
    steward_handle: Steward, manager: Manager, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Steward]:
    """A running `steward serve`, stopped with SIGTERM at the end of the session."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("steward-log") / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                STEWARD_BIN, "serve",
                "--listen", f"127.0.0.1:{port}",
                "--database-url", steward_handle.database_url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_live(process, port, log_path)
        steward_handle.base_url = f"http://127.0.0.1:{port}/v2"
        yield steward_handle
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def client(steward: Steward, manager: Manager) -> Iterator[telnyx.Telnyx]:
    """The SDK, authenticated as the main manager."""
    with steward.client(manager.api_key) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def other_manager(steward: Steward) -> Manager:
    """A second manager, for isolation tests."""
    return steward.create_manager()


@pytest.fixture(scope="session")
def other_client(steward: Steward, other_manager: Manager) -> Iterator[telnyx.Telnyx]:
    with steward.client(other_manager.api_key) as sdk:
        yield sdk


@pytest.fixture
def fresh_client(steward: Steward) -> Iterator[telnyx.Telnyx]:
    """The SDK for a brand-new manager with no managed accounts yet."""
    with steward.client(steward.create_manager().api_key) as sdk:
        yield sdk


@pytest.fixture
def client_for(steward: Steward) -> Iterator[Callable[[str], telnyx.Telnyx]]:
    """Builds SDK clients for arbitrary keys, closing them afterwards."""
    opened: list[telnyx.Telnyx] = []

    def build(api_key: str) -> telnyx.Telnyx:
        sdk = steward.client(api_key)
        opened.append(sdk)
        return sdk

    yield build
    for sdk in opened:
        sdk.close()

