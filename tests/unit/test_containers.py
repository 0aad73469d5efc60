"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: every variable a service receives is
a setting of the process it runs, images are pinned, every service has a healthcheck or is a one-shot others wait
for, and every command exists in the package."""

import importlib.util
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from db.__main__ import parser as db_parser
from docs.settings import PROCESSES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
# Images of their own projects, configured by their own variables.
OFFICIAL = {"postgres", "kafka", "prometheus", "grafana"}
SETTINGS = PROCESSES  # `python -m <module>` → its settings class
INTERPRETER = {"PATH", "PYTHONPATH", "PYTHONUNBUFFERED"}


def dockerfile(service: dict[str, Any]) -> str:
    return (REPO / str(service["build"]["dockerfile"])).read_text()


def command(service: dict[str, Any]) -> list[str]:
    """The service's command: its own, or its image's CMD; `sh -c "…"` unwrapped."""
    cmd = service.get("command") or json.loads(re.findall(r"^CMD (.+)$", dockerfile(service), re.M)[-1])
    if cmd[:2] == ["sh", "-c"]:
        cmd = shlex.split(re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", cmd[2]))
    return list(cmd)


def module(service: dict[str, Any]) -> str:
    cmd = command(service)
    assert cmd[:2] == ["python", "-m"], cmd
    return str(cmd[2])


def setting_names(settings: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


@pytest.mark.parametrize("name", sorted(set(SERVICES) - OFFICIAL))
def test_every_variable_a_service_receives_is_a_setting_of_its_process(name: str) -> None:
    service = SERVICES[name]
    assert "env_file" not in service, "an env_file hands every variable to every service: list them instead"
    received = set(service.get("environment", {}))
    received |= {
        v for line in re.findall(r"^ENV (.+)$", dockerfile(service), re.M) for v in re.findall(r"(\w+)=", line)
    }
    unknown = received - INTERPRETER - setting_names(SETTINGS[module(service)])
    assert not unknown, f"{name} runs `{module(service)}`, which has no setting {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(set(SERVICES) - OFFICIAL))
def test_every_command_exists_in_the_package(name: str) -> None:
    service = SERVICES[name]
    cmd = command(service)
    assert importlib.util.find_spec(module(service)) is not None, cmd
    if module(service) == "db":
        db_parser().parse_args(cmd[3:])  # a db subcommand with its options


def test_images_and_bases_are_pinned() -> None:
    images = [s["image"] for s in SERVICES.values() if "image" in s]
    bases = []
    for name in ("Dockerfile.api", "Dockerfile.bridge"):
        text = (REPO / name).read_text()
        assert set(re.findall(r"^FROM (\S+)", text, re.M)) == {"${BASE}"}, f"{name}: every stage on the one base"
        bases += re.findall(r"^ARG BASE=(\S+)$", text, re.M)
    assert bases == ["python:3.11.7-slim-bookworm"] * 2, "the official image, pinned, unless a build says otherwise"
    for image in images + bases:
        tag = image.partition(":")[2]
        assert re.match(r"^v?\d+\.\d+(\.\d+)?(-[\w.-]+)?$", tag), f"{image} is not pinned to a version"
    stack_kafka = re.search(r"^KAFKA_VERSION=(\S+)$", (REPO / "stack" / "versions.env").read_text(), re.M)
    assert stack_kafka and SERVICES["kafka"]["image"] == f"apache/kafka:{stack_kafka.group(1)}", (
        "the same as make stack"
    )


def test_every_service_is_checked_or_awaited() -> None:
    awaited = {dep for s in SERVICES.values() for dep, how in s.get("depends_on", {}).items()
               if how.get("condition") == "service_completed_successfully"}  # fmt: skip
    for name, service in SERVICES.items():
        own = service.get("healthcheck", {})
        in_image = "build" in service and "HEALTHCHECK" in dockerfile(service)
        checked = ("test" in own) or (in_image and not own.get("disable"))
        one_shot = name in awaited or "profiles" in service
        assert checked or one_shot, f"{name} has no healthcheck and nothing waits for it to complete"
        for dep, how in service.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on an unknown service {dep}"
            if how["condition"] == "service_healthy":
                assert "test" in SERVICES[dep].get("healthcheck", {}), (
                    f"{name} waits for {dep}'s health, never reported"
                )


def test_postgresql_and_kafka_keep_their_data_in_volumes() -> None:
    # Where each image writes its data: postgres's PGDATA default; Kafka's log.dirs, which the apache/kafka image
    # puts under /tmp unless KAFKA_LOG_DIRS says otherwise (the bridge's recovery state is a topic).
    data = {
        "postgres": SERVICES["postgres"].get("environment", {}).get("PGDATA", "/var/lib/postgresql/data"),
        "kafka": SERVICES["kafka"]["environment"].get("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
    }
    for name, directory in data.items():
        mounts = {volume.split(":")[1] for volume in SERVICES[name].get("volumes", [])}
        assert directory in mounts, f"{name} writes to {directory}, which no volume keeps: {mounts}"
        assert SERVICES[name]["volumes"][0].split(":")[0] in COMPOSE["volumes"]


def test_the_images_run_as_a_non_root_user_without_dev_tools() -> None:
    for name in ("Dockerfile.api", "Dockerfile.bridge"):
        text = (REPO / name).read_text()
        final = text[text.rindex("FROM ") :]
        assert re.search(r"^USER (?!root)\w+", final, re.M), f"{name} runs as root"
        installs = re.findall(r"pip install (.+)$", text, re.M)
        assert installs == ["--no-cache-dir --require-hashes -r /tmp/requirements.lock"], f"{name}: {installs}"


def test_the_images_hold_every_package_of_the_project() -> None:
    """The final stage copies the folders of pyproject.toml's package list: one not copied is missing from the
    image, and every process importing it fails at start."""
    included = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in included}
    assert packages >= {"bridge", "api", "consumers", "db", "common"}
    for name in ("Dockerfile.api", "Dockerfile.bridge"):
        text = (REPO / name).read_text()
        final = text[text.rindex("FROM ") :]
        copied = set(re.findall(r"^COPY (\w+) \./\1$", final, re.M))
        assert copied == packages, f"{name} copies {sorted(copied)}, the project's packages are {sorted(packages)}"


def test_the_stand_ins_are_the_versions_of_the_images_they_stand_in_for() -> None:
    """stack/containers/standins.yml (make test-containers) swaps only postgres and kafka, for the images
    stack/containers/images.sh tags with the versions of stack/versions.env."""
    standins = yaml.safe_load((REPO / "stack" / "containers" / "standins.yml").read_text())["services"]
    versions = dict(re.findall(r"^(\w+)=(\S+)$", (REPO / "stack" / "versions.env").read_text(), re.M))
    assert standins["postgres"] == {"image": f"localhost/warehouse-standin-postgres:{versions['POSTGRES_MAJOR']}"}
    assert standins["kafka"] == {"image": f"localhost/warehouse-standin-kafka:{versions['KAFKA_VERSION']}"}
    assert SERVICES["postgres"]["image"].startswith(f"postgres:{versions['POSTGRES_MAJOR']}.")
    ours = {name for name, service in SERVICES.items() if "build" in service}
    assert set(standins) == ours | {"postgres", "kafka"}
    for name in ours:
        assert set(standins[name]) == {"build"} and set(standins[name]["build"]) == {"args", "secrets"}, name
