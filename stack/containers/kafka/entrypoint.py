#!/usr/bin/env python3
"""The apache/kafka image's start, for what docker-compose.yml uses: every KAFKA_* variable but the JVM's is a
broker setting, named as that image names them (KAFKA_LOG_DIRS → log.dirs; `__` stands for `_`, `___` for `-`);
the storage in log.dirs is formatted once with CLUSTER_ID; then the broker runs in the foreground, with
KAFKA_HEAP_OPTS (default -Xmx1G -Xms1G)."""

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path("/opt/kafka/config/server.properties")
JVM = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_LOG4J_OPTS"}
CLUSTER_ID = os.environ.get("CLUSTER_ID", "5L6g3nShT-eMCtK--X86sw")  # the image's default
JAVA = ["java", "-cp", "/opt/kafka/libs/*", "-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.yaml"]


def setting(variable: str) -> str:
    return (
        variable.removeprefix("KAFKA_")
        .lower()
        .replace("___", "-")
        .replace("__", "\0")
        .replace("_", ".")
        .replace("\0", "_")
    )


def main() -> None:
    settings = {setting(k): v for k, v in sorted(os.environ.items()) if k.startswith("KAFKA_") and k not in JVM}
    if not settings.get("node.id") or not settings.get("log.dirs"):
        sys.exit("the kafka stand-in needs KAFKA_NODE_ID and KAFKA_LOG_DIRS")
    CONFIG.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    if not (Path(settings["log.dirs"].split(",")[0]) / "meta.properties").exists():
        subprocess.run([*JAVA, "kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(CONFIG)], check=True)
    heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xmx1G -Xms1G").split()
    os.execvp("java", ["java", *heap, *JAVA[1:], "kafka.Kafka", str(CONFIG)])


if __name__ == "__main__":
    main()
