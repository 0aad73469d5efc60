"""The locks agree with pyproject.toml: every dependency it names is pinned in its lock at a version its range
allows, with hashes, and the lock names nothing pyproject no longer asks for. `make lock` mends a disagreement."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
FROM_PYPROJECT = "warehouse-tracker (pyproject.toml)"


def pins(lock: Path) -> dict[str, tuple[str, bool, bool]]:
    """name → (version, hashed, asked for by pyproject) of every package the lock pins."""
    found: dict[str, tuple[str, bool, bool]] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match:
            found[canonicalize_name(match[1])] = (match[2], "--hash=sha256:" in entry, FROM_PYPROJECT in entry)
    return found


def requirements(group: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(r) for r in listed]


def disagreements(lock: Path, wanted: list[Requirement]) -> list[str]:
    pinned = pins(lock)
    problems = [f"{name}=={version} has no hash" for name, (version, hashed, _) in pinned.items() if not hashed]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not requirement.specifier.contains(pinned[name][0], prereleases=True):
            problems.append(f"{requirement} does not allow {lock.name}'s {name}=={pinned[name][0]}")
    asked = {canonicalize_name(r.name) for r in wanted}
    problems += [
        f"{lock.name} pins {n} for pyproject, which no longer asks for it"
        for n, p in pinned.items()
        if p[2] and n not in asked
    ]
    return problems


def test_the_runtime_lock_agrees_with_pyproject() -> None:
    assert disagreements(ROOT / "requirements.lock", requirements(None)) == [], "run `make lock`"


def test_the_dev_lock_agrees_with_pyproject_and_pins_the_runtime_set_alike() -> None:
    lock = ROOT / "requirements-dev.lock"
    assert disagreements(lock, requirements(None) + requirements("dev")) == [], "run `make lock`"
    runtime, dev = pins(ROOT / "requirements.lock"), pins(lock)
    assert {n: v[0] for n, v in runtime.items() if dev[n][0] != v[0]} == {}, "the images and make venv differ"


def test_a_disagreement_is_found(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "asyncpg==0.29.0 \\\n    --hash=sha256:ab\n    # via warehouse-tracker (pyproject.toml)\n"
        "gone==1.0 \\\n    --hash=sha256:cd\n    # via warehouse-tracker (pyproject.toml)\n"
        "bare==2.0\n    # via asyncpg\n"
    )
    wanted = [Requirement("asyncpg>=0.30"), Requirement("fastapi>=0.115")]
    assert disagreements(lock, wanted) == [
        "bare==2.0 has no hash",
        "asyncpg>=0.30 does not allow requirements.lock's asyncpg==0.29.0",
        "fastapi>=0.115 is not in requirements.lock",
        "requirements.lock pins gone for pyproject, which no longer asks for it",
    ]
