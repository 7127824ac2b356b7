"""Fixtures: the real `aiaudit serve` binary on a free loopback port.

The binary is $AIAUDIT_BIN, else the workspace's target/debug/aiaudit (build
it with `cargo build --bin aiaudit`). Waiting is on observable conditions
(health answers, sizes reached), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]


def aiaudit_bin() -> str:
    explicit = os.environ.get("AIAUDIT_BIN")
    if explicit:
        return explicit
    built = REPO / "target" / "debug" / "aiaudit"
    if built.exists():
        return str(built)
    pytest.fail("no aiaudit binary: set AIAUDIT_BIN or run `cargo build --bin aiaudit`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Any, what: str, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Ledger:
    """A running `aiaudit serve` with its data directory and admin token."""

    def __init__(self, data_dir: Path, port: Optional[int] = None, extra: Optional[List[str]] = None,
                 ca_file: Optional[Path] = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        # With a CA file the ledger serves TLS (extra holds --tls-cert/--tls-key).
        self.ca_file = ca_file
        self.context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        self.extra = extra or []
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.token = ""

    def start(self) -> "Ledger":
        env = dict(os.environ, AIAUDIT_LOG="warn")
        self.proc = subprocess.Popen(
            # The suite counts a tenant's entries exactly while it reads
            # them: the ledger's access records (on by default) would count.
            [aiaudit_bin(), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}",
             "--publish-interval-ms", "200", "--access-log", "false", *self.extra],
            env=env, stdout=subprocess.DEVNULL)
        wait_until(self._healthy, f"the ledger at {self.url}")
        self.token = (self.data_dir / "admin.token").read_text().strip()
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"aiaudit serve exited with {self.proc.returncode}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2, context=self.context) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get_json(self, path: str, token: Optional[str] = None) -> Any:
        req = urllib.request.Request(f"{self.url}{path}",
                                     headers={"Authorization": f"Bearer {token or self.token}"})
        with urllib.request.urlopen(req, timeout=30, context=self.context) as r:
            return json.loads(r.read())

    def cli(self, *args: str) -> str:
        env = dict(os.environ)
        if self.ca_file is not None:
            env["AIAUDIT_CA_CERT"] = str(self.ca_file)
        out = subprocess.run([aiaudit_bin(), *args], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, f"aiaudit {' '.join(args)}: {out.stdout}{out.stderr}"
        return out.stdout

    def create_token(self, tenant: str, role: str = "emitter") -> str:
        return self.cli("token", "create", "--url", self.url, "--token", self.token,
                        "--tenant", tenant, "--role", role).strip()

    def events(self, tenant: str) -> List[Dict[str, Any]]:
        """Every event of `tenant`, oldest first, once the search index has caught up with the log."""
        size = self.get_json("/v1/info")["sequenced_size"]
        wait_until(lambda: self.get_json("/v1/info")["size"] >= size, "a checkpoint over every event")
        out: List[Dict[str, Any]] = []
        cursor: Optional[str] = None
        while True:
            q = f"/v1/events?tenant={tenant}&order=asc&limit=1000"
            if cursor:
                q += f"&cursor={cursor}"
            page = self.get_json(q)
            if cursor is None and page.get("index_lag_events", 0) > 0:
                wait_until(lambda: self.get_json(q).get("index_lag_events", 0) == 0, "the search index")
                continue
            out.extend(page["events"])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def wait_events(self, tenant: str, n: int, timeout: float = 60.0) -> List[Dict[str, Any]]:
        """The tenant's events once there are at least `n`."""
        found: List[Dict[str, Any]] = wait_until(
            lambda: (lambda ev: ev if len(ev) >= n else None)(self.events(tenant)),
            f"{n} events of {tenant}", timeout=timeout, every=0.2)
        return found

    def verify(self) -> Dict[str, Any]:
        """`aiaudit verify --url` of the whole log: its JSON report (it exits non-zero on any failure)."""
        vkey = (self.data_dir / "log.vkey").read_text().strip()
        report: Dict[str, Any] = json.loads(
            self.cli("verify", "--url", self.url, "--token", self.token, "--vkey", vkey, "--json"))
        return report


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger").start()
    yield led
    led.stop()


@pytest.fixture
def make_ledger(tmp_path: Path) -> Iterator[Any]:
    """Ledgers started (or not yet) by the test; all stopped at the end."""
    made: List[Ledger] = []

    def make(name: str = "ledger", port: Optional[int] = None, extra: Optional[List[str]] = None,
             start: bool = True, ca_file: Optional[Path] = None) -> Ledger:
        led = Ledger(tmp_path / name, port, extra, ca_file)
        made.append(led)
        return led.start() if start else led

    yield make
    for led in made:
        led.stop()


def event(i: Any, tenant: str = "acme", **extra: Any) -> Dict[str, Any]:
    e: Dict[str, Any] = {"tenant": tenant, "source": {"name": "pytest"},
                         "actor": {"id": "agent-7", "type": "agent"}, "action": "agent.decision",
                         "attributes": {"n": i}}
    e.update(extra)
    return e


def run_python(code: str, *args: str, timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
