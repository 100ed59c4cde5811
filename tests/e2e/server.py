"""The real `usage-events` command for end-to-end tests: one-off CLI runs and a `serve` process."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
WORKER_STARTED = "Application startup complete."
TCP_ESTABLISHED = "01"  # The state column of /proc/net/tcp.


def usage_events_executable() -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside_python = Path(sys.executable).parent / "usage-events"
    if beside_python.exists():
        return str(beside_python)
    on_path = shutil.which("usage-events")
    if on_path is None:
        pytest.fail("the `usage-events` command is not installed (make install)")
    return on_path


def cli_environment(database_url: str) -> dict[str, str]:
    """This process's environment, minus any USAGE_EVENTS_* setting but the database URL.

    A developer's own USAGE_EVENTS_MAX_BATCH_SIZE (say) must not change what a test sees.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("USAGE_EVENTS_")
    }
    environment["USAGE_EVENTS_DATABASE_URL"] = database_url
    return environment


def run_cli(
    *arguments: str, database_url: str, cwd: Path, settings: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `usage-events ARGUMENTS…` to completion; the caller checks its exit code.

    `settings`: USAGE_EVENTS_* variables set for this run only.
    """
    return subprocess.run(
        [usage_events_executable(), *arguments],
        env={**cli_environment(database_url), **(settings or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Everything about a finished command, for assertion messages."""
    return (
        f"$ {' '.join(map(str, result.args))}\nexit code {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    )


@dataclass(frozen=True)
class RunningServer:
    port: int
    database_url: str
    log_path: Path
    process_group: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def connections_per_process(self) -> Counter[int]:
        """Open client connections per server process (pid): which workers hold them now.

        Read from Linux's /proc: a socket accepted by a worker is one of its descriptors.
        """
        tcp_table = Path("/proc/net/tcp")
        if not tcp_table.exists():
            pytest.skip("telling worker processes apart needs Linux's /proc")
        accepted: set[str] = set()
        for line in tcp_table.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rpartition(":")[2], 16)
            if local_port == self.port and fields[3] == TCP_ESTABLISHED:
                accepted.add(f"socket:[{fields[9]}]")
        connections: Counter[int] = Counter()
        for pid in _processes_in_group(self.process_group):
            with contextlib.suppress(OSError):  # The process or descriptor is gone by now.
                for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                    if os.readlink(descriptor) in accepted:
                        connections[pid] += 1
        return connections


def _processes_in_group(group: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == group:
                    pids.append(int(entry.name))
    return pids


@contextmanager
def running_server(
    database_url: str,
    directory: Path,
    *,
    workers: int,
    settings: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """`usage-events serve` on a free port, ready when entered, stopped (all workers) on exit.

    `settings` are more USAGE_EVENTS_* variables for the server, e.g. {"CORS_ORIGINS": …}.
    """
    port = free_port()
    log_path = directory / "serve.log"
    command = [usage_events_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    environment = cli_environment(database_url)
    environment.update({f"USAGE_EVENTS_{name}": value for name, value in (settings or {}).items()})
    with log_path.open("wb") as log:
        # A session of its own, so that stopping it reaches the worker processes too.
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # start_new_session made the server the leader of a process group of its own.
        server = RunningServer(port, database_url, log_path, process_group=process.pid)
        try:
            _wait_until_ready(process, server, workers)
            yield server
        finally:
            _stop(process)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(
    process: subprocess.Popen[bytes], server: RunningServer, workers: int
) -> None:
    """Until /readyz answers 200 and every worker has started (uvicorn logs each start-up)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`usage-events serve` exited with {process.returncode}:\n{server.log()}")
        try:
            ready = httpx.get(f"{server.base_url}/readyz", timeout=1.0).status_code == 200
            if ready and server.log().count(WORKER_STARTED) >= workers:
                return
        except httpx.TransportError:
            pass  # Not listening yet.
        time.sleep(0.1)
    pytest.fail(
        f"`usage-events serve` was not ready within {READY_TIMEOUT_SECONDS} s:\n{server.log()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and every worker: gracefully, else by SIGKILL to its process group."""
    group = process.pid
    # SIGTERM to the supervisor alone: it stops its workers itself. Signalled too, a worker
    # would die under the supervisor's health check, which then waits seconds for its answer.
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(group, signal.SIGKILL)
        process.wait()
    # Workers the supervisor failed to reap must not outlive the test.
    _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, signal_number: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # The group is gone already.
        os.killpg(group, signal_number)
