"""End-to-end: the official GraphQL-over-HTTP audits (`graphql-http`'s serverAudits).

A real `usage-events serve` process on SQLite and on PostgreSQL, one business, and the
audit suite run by node against it with the business's key (tests/e2e/graphql_http_audit/,
versions pinned in its package-lock.json). Every audit must pass: MUST, SHOULD and MAY.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.server import RunningServer, describe, run_cli, running_server

AUDIT_DIRECTORY = Path(__file__).parent / "graphql_http_audit"
AUDIT_SCRIPT = AUDIT_DIRECTORY / "audit.mjs"
INSTALL_TIMEOUT_SECONDS = 300.0
AUDIT_TIMEOUT_SECONDS = 120.0
# What graphql-http 1.23.1 (the pinned version) has: a new version may add audits, and
# its counts are then updated here with the pin, on purpose.
EXPECTED_COUNTS = {"MUST": 13, "SHOULD": 23, "MAY": 25}


@dataclass(frozen=True)
class AuditResult:
    id: str
    name: str
    status: str
    reason: str | None
    response: dict[str, object] | None

    @property
    def level(self) -> str:
        return self.name.split(" ", 1)[0]

    def describe(self) -> str:
        answered = f" (answered {self.response})" if self.response else ""
        return f"{self.id} {self.name}: {self.status}, {self.reason}{answered}"


def required_command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"the GraphQL-over-HTTP audit needs `{name}` (Node.js 20 or newer) on PATH")
    return path


def installed_as_locked() -> bool:
    """Whether node_modules holds every package at the version package-lock.json pins."""
    lock = json.loads((AUDIT_DIRECTORY / "package-lock.json").read_text(encoding="utf-8"))
    for path, package in lock["packages"].items():
        if not path:  # The project itself.
            continue
        manifest = AUDIT_DIRECTORY / path / "package.json"
        if not manifest.exists():
            return False
        if json.loads(manifest.read_text(encoding="utf-8"))["version"] != package["version"]:
            return False
    return True


@pytest.fixture(scope="session")
def audit_command() -> list[str]:
    """`node audit.mjs`, its packages installed from the lock first when they are not."""
    node = required_command("node")
    if not installed_as_locked():
        install = subprocess.run(
            [required_command("npm"), "ci", "--no-audit", "--no-fund"],
            cwd=AUDIT_DIRECTORY,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        assert install.returncode == 0, describe(install)
    return [node, str(AUDIT_SCRIPT)]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(database_url, tmp_path, workers=1) as running:
        yield running


def create_api_key(server: RunningServer) -> str:
    created = run_cli(
        "create-business",
        "GraphQL-over-HTTP audit",
        "--json",
        database_url=server.database_url,
        cwd=server.log_path.parent,
    )
    assert created.returncode == 0, describe(created)
    api_key: str = json.loads(created.stdout)["api_key"]
    return api_key


def run_audits(command: list[str], server: RunningServer, api_key: str) -> list[AuditResult]:
    environment = os.environ | {"GRAPHQL_HTTP_AUDIT_API_KEY": api_key}
    finished = subprocess.run(
        [*command, f"{server.base_url}/graphql"],
        env=environment,
        cwd=AUDIT_DIRECTORY,
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_SECONDS,
        check=False,
    )
    assert finished.returncode == 0, f"{describe(finished)}\n--- server log ---\n{server.log()}"
    results = []
    for line in finished.stdout.splitlines():
        fields = json.loads(line)
        results.append(
            AuditResult(
                id=fields["id"],
                name=fields["name"],
                status=fields["status"],
                reason=fields["reason"],
                response=fields.get("response"),
            )
        )
    return results


def test_graphql_over_http_audits_pass_every_must_should_and_may(
    audit_command: list[str], server: RunningServer
) -> None:
    results = run_audits(audit_command, server, create_api_key(server))

    counts = {level: sum(result.level == level for result in results) for level in EXPECTED_COUNTS}
    assert counts == EXPECTED_COUNTS, "\n".join(result.describe() for result in results)
    failed = [result.describe() for result in results if result.status != "ok"]
    assert not failed, "GraphQL-over-HTTP audits failed:\n" + "\n".join(failed)
