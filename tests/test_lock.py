"""The committed locks are what is installed, and they satisfy pyproject.toml's ranges (deps/update re-locks)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DEPS = ROOT / "deps"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")
# pip freeze leaves these out (they belong to the venv); the build lock pins setuptools' peers, not pip itself.
FREEZE_OMITS = {"pip", "setuptools", "wheel", "distribute"}


def pins(*names: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        for line in (DEPS / name).read_text().splitlines():
            if match := PIN.match(line):
                found[canonicalize_name(match[1])] = match[2]
    return found


def test_every_lock_line_is_pinned_with_hashes():
    for name in ("requirements-demo.lock", "requirements-test.lock", "requirements-build.lock"):
        # An entry is its pin line plus the indented lines after it (hashes, then "# via" notes).
        for entry in re.findall(r"^[A-Za-z].*(?:\n[ \t].*)*", (DEPS / name).read_text(), re.MULTILINE):
            assert PIN.match(entry), f"{name}: {entry.splitlines()[0]} is not pinned with =="
            assert "--hash=sha256:" in entry, f"{name}: {entry.splitlines()[0]} has no hash"


def test_the_installed_environment_is_exactly_the_lock():
    """What `bash deps/install test` made: every locked version, and nothing else (pip freeze, editable excluded)."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    installed = {canonicalize_name(m[1]): m[2] for line in frozen.splitlines() if (m := PIN.match(line))}
    locked = pins("requirements-test.lock", "requirements-build.lock")
    locked = {name: version for name, version in locked.items() if name not in FREEZE_OMITS}
    assert installed == locked, (
        f"differs from the lock: installed only {sorted(set(installed.items()) - set(locked.items()))}, "
        f"locked only {sorted(set(locked.items()) - set(installed.items()))}. Run `bash deps/install test`."
    )


def test_the_locks_satisfy_pyproject():
    """A range changed in pyproject.toml without `deps/update` fails here, naming the package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, requirements in (
        ("requirements-demo.lock", project["dependencies"]),
        ("requirements-test.lock", project["dependencies"] + project["optional-dependencies"]["test"]),
    ):
        locked = pins(lock)
        for text in requirements:
            requirement = Requirement(text)
            version = locked.get(canonicalize_name(requirement.name))
            assert version is not None, f"{requirement.name} is missing from deps/{lock}: run deps/update"
            assert requirement.specifier.contains(version, prereleases=True), (
                f"deps/{lock} pins {requirement.name}=={version}, outside {requirement}: run deps/update"
            )
