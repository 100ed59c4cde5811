"""Refresh graph/graphiql_assets/ from the npm registry: `make graphiql-assets`.

The pins below are the one place where GraphiQL's versions are chosen. For each package
the script runs `npm pack NAME@VERSION` in a temporary folder (npm checks the tarball
against the registry's integrity hash), checks the tarball against the integrity already
recorded for that version, copies the listed files and licences, byte for byte, to
graph/graphiql_assets/<package>-<version>/ at their published paths, and writes
manifest.json with each file's sha256. A version already in the manifest must give the
same bytes again: any difference stops the run before anything is written.

    python scripts/graphiql_assets.py           # refresh (after changing a pin)
    python scripts/graphiql_assets.py --check   # fetch and compare only; write nothing
"""

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "graph" / "graphiql_assets"
MANIFEST = ASSETS / "manifest.json"


@dataclass(frozen=True)
class Licence:
    """A licence file to keep beside a package's files, taken from `source` (name@version)."""

    source: str
    path: str = "LICENSE"
    saved_as: str = "LICENSE"


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    # Published paths, in the order the page loads them (stylesheets, then scripts).
    files: tuple[str, ...]
    licences: tuple[Licence, ...]
    note: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def directory(self) -> str:
        """The folder name npm gives the package's tarball: `@graphiql/x` → `graphiql-x`."""
        return f"{self.name.removeprefix('@').replace('/', '-')}-{self.version}"


# The versions Strawberry 0.341's own GraphiQL page loads from a CDN, known to work together.
PINS = (
    Pin(
        "react",
        "18.2.0",
        ("umd/react.production.min.js",),
        (Licence("react@18.2.0"),),
    ),
    Pin(
        "react-dom",
        "18.2.0",
        ("umd/react-dom.production.min.js",),
        (Licence("react-dom@18.2.0"),),
    ),
    Pin(
        "graphiql",
        "3.8.3",
        ("graphiql.min.css", "graphiql.min.js"),
        (Licence("graphiql@3.8.3"),),
    ),
    Pin(
        "@graphiql/plugin-explorer",
        "1.0.2",
        ("dist/style.css", "dist/index.umd.js"),
        (
            Licence("graphiql@3.8.3"),
            Licence("graphiql-explorer@0.9.0", saved_as="LICENSE.graphiql-explorer"),
        ),
        note=(
            "The package publishes no licence file; its package.json says MIT and names the "
            "graphql/graphiql repository, whose licence graphiql@3.8.3 publishes. Its UMD "
            "bundle includes graphiql-explorer@0.9.0 (MIT), whose licence is kept too."
        ),
    ),
)


class AssetError(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    arguments = parser.parse_args()
    try:
        refresh(check_only=arguments.check)
    except AssetError as error:
        sys.exit(f"graphiql assets: {error}")


def refresh(*, check_only: bool) -> None:
    recorded = _recorded_packages()
    with tempfile.TemporaryDirectory() as temporary:
        packs = Path(temporary)
        tarballs: dict[str, tuple[Path, str]] = {}
        for spec in _specs_needed():
            tarballs[spec] = _npm_pack(spec, packs)
        manifest: dict[str, Any] = {
            "comment": "Written by scripts/graphiql_assets.py (make graphiql-assets); do not edit.",
            "packages": [],
        }
        contents: dict[Path, bytes] = {}
        for pin in PINS:
            tarball, integrity = tarballs[pin.spec]
            entry = _package_entry(pin, tarball, integrity, contents, tarballs)
            _compare_with_record(entry, recorded.get(pin.spec))
            manifest["packages"].append(entry)
        if check_only:
            _check_files_on_disk(contents)
            print(f"graphiql assets: {len(contents)} files match npm and {MANIFEST.name}.")
            return
        _write(manifest, contents)


def _specs_needed() -> list[str]:
    specs = [pin.spec for pin in PINS]
    specs += [licence.source for pin in PINS for licence in pin.licences]
    return list(dict.fromkeys(specs))


def _npm_pack(spec: str, destination: Path) -> tuple[Path, str]:
    """The tarball of `spec` and its sha512 integrity, as npm fetched and checked it."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError("npm is needed (Debian: apt-get install npm).")
    result = subprocess.run(
        [npm, "pack", spec, "--json", "--pack-destination", str(destination)],
        cwd=destination,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssetError(f"npm pack {spec} failed:\n{result.stderr}")
    (packed,) = json.loads(result.stdout)
    return destination / packed["filename"], packed["integrity"]


def _package_entry(
    pin: Pin,
    tarball: Path,
    integrity: str,
    contents: dict[Path, bytes],
    tarballs: dict[str, tuple[Path, str]],
) -> dict[str, Any]:
    package_json = json.loads(_member(tarball, "package.json"))
    if package_json.get("version") != pin.version:
        raise AssetError(f"{pin.spec}: the tarball holds version {package_json.get('version')}")
    entry: dict[str, Any] = {
        "name": pin.name,
        "version": pin.version,
        "license": package_json.get("license"),
        "integrity": integrity,
        "directory": pin.directory,
        "files": [],
        "licences": [],
    }
    if pin.note:
        entry["note"] = pin.note
    for path in pin.files:
        data = _member(tarball, path)
        contents[ASSETS / pin.directory / path] = data
        entry["files"].append({"path": path, "sha256": hashlib.sha256(data).hexdigest()})
    for licence in pin.licences:
        data = _member(tarballs[licence.source][0], licence.path)
        contents[ASSETS / pin.directory / licence.saved_as] = data
        entry["licences"].append(
            {
                "path": licence.saved_as,
                "from": f"{licence.source}/{licence.path}",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return entry


def _member(tarball: Path, path: str) -> bytes:
    """A file of an npm tarball, whose members all live under `package/`."""
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.extractfile(f"package/{path}")
        except KeyError:
            member = None
        if member is None:
            raise AssetError(f"{tarball.name} has no file {path}")
        return member.read()


def _recorded_packages() -> dict[str, dict[str, Any]]:
    if not MANIFEST.exists():
        return {}
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {f"{entry['name']}@{entry['version']}": entry for entry in manifest["packages"]}


def _compare_with_record(entry: dict[str, Any], recorded: dict[str, Any] | None) -> None:
    """The same version must come back with the same tarball and the same file hashes."""
    if recorded is None:
        return
    spec = f"{entry['name']}@{entry['version']}"
    if recorded["integrity"] != entry["integrity"]:
        raise AssetError(
            f"{spec}: the registry's tarball differs from the one recorded "
            f"({recorded['integrity']} → {entry['integrity']}); nothing was written."
        )
    for kind in ("files", "licences"):
        before = {item["path"]: item["sha256"] for item in recorded[kind]}
        for item in entry[kind]:
            if item["path"] in before and before[item["path"]] != item["sha256"]:
                raise AssetError(
                    f"{spec}: {item['path']} has sha256 {item['sha256']}, "
                    f"recorded {before[item['path']]}; nothing was written."
                )


def _check_files_on_disk(contents: dict[Path, bytes]) -> None:
    for path, data in contents.items():
        if not path.exists() or path.read_bytes() != data:
            raise AssetError(f"{path.relative_to(ASSETS)} differs from npm's; run the refresh.")


def _write(manifest: dict[str, Any], contents: dict[Path, bytes]) -> None:
    # Everything was fetched and checked: the folder now holds exactly what the manifest names.
    for folder in ASSETS.iterdir() if ASSETS.exists() else ():
        if folder.is_dir():
            shutil.rmtree(folder)
    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"graphiql assets: wrote {len(contents)} files and {MANIFEST.name}.")


if __name__ == "__main__":
    main()
