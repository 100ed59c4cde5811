"""wrk (Debian's package), the load generator of the read scenarios: C, its own process."""

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).parent / "lua" / "rotate.lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return self.latency_us["p50"] / 1000

    @property
    def p99_ms(self) -> float:
        return self.latency_us["p99"] / 1000

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "mean_ms": round(self.latency_us["mean"] / 1000, 3),
            "errors": self.errors,
        }


def wrk_executable() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (make bench does it)")
    return found


def run_wrk(
    base_url: str,
    *,
    method: str,
    lines: list[str],
    authorization: str,
    path: str = "/",
    connections: int = 1,
    seconds: int = 1,
    threads: int = 1,
) -> WrkResult:
    """Send `lines` in turn (paths for GET, bodies for POST to `path`) for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as requests_file:
        requests_file.write("\n".join(lines) + "\n")
    try:
        completed = subprocess.run(
            [
                wrk_executable(),
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, int(seconds))}s",
                "--timeout",
                "60s",
                "-s",
                str(SCRIPT),
                base_url + (path if method != "GET" else "/"),
                "--",
                method,
                requests_file.name,
                authorization,
                path,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
    finally:
        Path(requests_file.name).unlink(missing_ok=True)
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=data["errors"],
                latency_us=data["latency_us"],
            )
    raise RuntimeError(
        f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )
