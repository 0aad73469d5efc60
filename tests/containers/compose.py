"""docker-compose.yml run by podman-compose, for `make test-containers`: a project of its own (name, env file,
volumes), the stand-ins' override (stack/containers/standins.yml), and what podman 4.3 without systemd cannot do
itself, done the way the compose file says:
- healthchecks run only when asked (podman schedules them with systemd timers): `healthy` runs a service's check
  until it passes, as the timer would every `interval`;
- podman-compose ignores `condition: service_healthy` on podman before 4.6: `up` starts the services one by one
  in dependency order, each once its `depends_on` conditions hold (healthy, or completed with exit code 0)."""

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.private_stack import REPO

PODMAN_COMPOSE = REPO / ".venv" / "bin" / "podman-compose"
CONTAINERS_CONF = REPO / "stack" / "containers" / "containers.conf"
FILES = [REPO / "docker-compose.yml", REPO / "stack" / "containers" / "standins.yml"]
BUILD_ARGS = "--network host --format docker"  # pip and apt reach the network; HEALTHCHECK kept in the images


class Compose:
    def __init__(self, project: str, env_file: Path, log: Path, api_port: int) -> None:
        self.project, self.env_file, self.log, self.api_port = project, env_file, log, api_port
        self.services: dict[str, Any] = yaml.safe_load(FILES[0].read_text())["services"]
        # Nothing of this shell's environment (the Makefile exports DATABASE_URL…): the env file fills the compose
        # file in.
        self.env = {"CONTAINERS_CONF": str(CONTAINERS_CONF), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """podman-compose with the project's files and env file; its output is also appended to the log."""
        files = [arg for f in FILES for arg in ("-f", str(f))]
        command = [str(PODMAN_COMPOSE), "--env-file", str(self.env_file), "-p", self.project, *files,
                   f"--podman-build-args={BUILD_ARGS}", *args]  # fmt: skip
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        with self.log.open("a") as log:
            log.write(f"$ podman-compose {' '.join(args)}\n{done.stdout}{done.stderr}\n")
        if check and done.returncode != 0:
            raise AssertionError(f"podman-compose {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")
        return done

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def state(self, service: str) -> dict[str, Any]:
        found = self.podman("inspect", "--format", "{{json .State}}", self.container(service), check=False)
        return json.loads(found.stdout) if found.returncode == 0 else {}

    def healthy(self, service: str, timeout: float = 180) -> None:
        """Runs the service's healthcheck (the compose file's, or its image's) until it passes."""
        deadline = time.monotonic() + timeout
        while self.podman("healthcheck", "run", self.container(service), check=False).returncode != 0:
            state = self.state(service)
            assert state.get("Running"), f"{service} stopped: {state}\n{self.logs(service)[-3000:]}"
            assert time.monotonic() < deadline, (
                f"{service} not healthy in {timeout:.0f} s\n{self.logs(service)[-3000:]}"
            )
            time.sleep(2)

    def completed(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state(service)).get("Status") != "exited":
            assert time.monotonic() < deadline, f"{service} did not complete in {timeout:.0f} s"
            time.sleep(1)
        assert state["ExitCode"] == 0, f"{service} exited with {state['ExitCode']}\n{self.logs(service)}"

    def up(self, *services: str) -> None:
        """Starts the services, and what they depend on, in dependency order, each once its conditions hold."""
        started: set[str] = set()

        def start(name: str) -> None:
            if name in started:
                return
            for dependency, how in self.services[name].get("depends_on", {}).items():
                start(dependency)
                {"service_healthy": self.healthy, "service_completed_successfully": self.completed}[how["condition"]](
                    dependency
                )
            self("up", "-d", "--no-deps", name)
            started.add(name)

        for name in services:
            start(name)

    def logs(self, service: str) -> str:
        done = self.podman("logs", self.container(service), check=False)
        return done.stdout + done.stderr

    def exec(self, service: str, *command: str) -> str:
        return self("exec", "-T", service, *command).stdout
