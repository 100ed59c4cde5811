"""Server processes (each in a process group of its own) and the memory they use."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
SAMPLE_INTERVAL_SECONDS = 0.05


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(database_url: str) -> dict[str, str]:
    """This environment minus any USAGE_EVENTS_* setting but the database URL: defaults apply."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("USAGE_EVENTS_")
    }
    environment["USAGE_EVENTS_DATABASE_URL"] = database_url
    return environment


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server process and all its descendants (uvicorn's workers)."""
        return [self.process.pid, *descendants(self.process.pid)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def usage_events_command() -> list[str]:
    beside_python = Path(sys.executable).parent / "usage-events"
    if beside_python.exists():
        return [str(beside_python)]
    return [sys.executable, "-m", "graph.cli"]


def start_server(
    name: str,
    command: list[str],
    database_url: str,
    log_directory: Path,
    port: int,
    settings: dict[str, str] | None = None,
) -> Server:
    """`settings`: USAGE_EVENTS_* variables for this server (all others take defaults)."""
    log_path = log_directory / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=server_environment(database_url) | (settings or {}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    return Server(name, port, process, log_path)


def wait_until(server: Server, answered: Callable[[], bool], pause: float = 0.1) -> None:
    """Until `answered()` says the server is ready; a server that exits, or is not ready
    within READY_TIMEOUT_SECONDS, fails with the tail of its log. A transport error (not
    listening yet) counts as not ready."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if answered():
                return
        except httpx.TransportError:
            pass
        time.sleep(pause)
    raise RuntimeError(f"{server.name} did not become ready:\n{server.log_tail()}")


def wait_ready(server: Server, workers: int = 1) -> None:
    """Until /healthz answers (and, with several workers, each worker has started)."""

    def answered() -> bool:
        if httpx.get(f"{server.url}/healthz", timeout=2).status_code != 200:
            return False
        if workers == 1:
            return True
        # Every worker must have its app loaded, not merely be forked.
        log = server.log_path.read_text(errors="replace")
        return (
            len(descendants(server.process.pid)) >= workers
            and log.count("Application startup complete") >= workers
        )

    wait_until(server, answered)


def stop_server(server: Server) -> None:
    if server.process.poll() is not None:
        return
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(STOP_TIMEOUT_SECONDS)
    # Workers of a multi-process server may outlive the supervisor for a moment.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# Memory.


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    for child in children.read().split():
                        found.append(int(child))
                        pending.append(int(child))
            except OSError:
                continue
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(server: Server) -> float:
    """Resident memory of the server's whole process tree now, MiB."""
    return sum(_status_kib(pid, "VmRSS:") for pid in server.pids()) / 1024


def hwm_mib(server: Server) -> float:
    """The sum of each process's own peak resident memory since it started (VmHWM), MiB."""
    return sum(_status_kib(pid, "VmHWM:") for pid in server.pids()) / 1024


@dataclass
class MemoryWindow:
    peaks: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    keep_samples: bool = False
    started: float = field(default_factory=time.monotonic)


class MemorySampler:
    """Polls the resident memory of every tracked server (with its workers) in a thread."""

    def __init__(self) -> None:
        self._servers: dict[str, Server] = {}
        self._windows: list[MemoryWindow] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def track(self, server: Server) -> None:
        with self._lock:
            self._servers[server.name] = server

    def untrack(self, server: Server) -> None:
        with self._lock:
            self._servers.pop(server.name, None)

    @contextmanager
    def window(self, keep_samples: bool = False) -> Iterator[MemoryWindow]:
        window = MemoryWindow(keep_samples=keep_samples)
        self._sample_into([window])
        with self._lock:
            self._windows.append(window)
        try:
            yield window
        finally:
            with self._lock:
                self._windows.remove(window)
            self._sample_into([window])

    def _sample_into(self, windows: list[MemoryWindow]) -> None:
        with self._lock:
            servers = list(self._servers.values())
        for server in servers:
            value = rss_mib(server)
            if value <= 0:
                continue
            for window in windows:
                window.peaks[server.name] = max(window.peaks.get(server.name, 0.0), value)
                if window.keep_samples:
                    moment = time.monotonic() - window.started
                    window.samples.setdefault(server.name, []).append((moment, value))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_SECONDS):
            with self._lock:
                windows = list(self._windows)
            if windows:
                self._sample_into(windows)
