"""A real facecast server in a subprocess, for the live tests (one per test module or session)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.loopback import SITE_DIR

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    startup_s: float = 90.0,
    root: Path = ROOT,
) -> Iterator[LiveServer]:
    """Start `facecast serve` on a free loopback port; stop it (and check it stopped) after.

    `root` is the checkout whose server runs (benchmarks compare another commit's)."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    environment = {**os.environ, "FACECAST_DATA_DIR": str(data_dir), **(env or {})}
    # The server under test gathers loopback ICE candidates only (tests/loopback.py).
    python_path = [str(SITE_DIR), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in python_path if p)
    command = [sys.executable, "-m", "server.cli", "-v", "serve", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=log, stderr=log)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(server, env or {}, startup_s)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: LiveServer, env: dict[str, str], startup_s: float) -> None:
    token = env.get("FACECAST_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.log()}"
            )
        try:
            if httpx.get(server.url + "/api/health", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not become healthy in {startup_s} s:\n{server.log()}")
