#!/usr/bin/env bash
# The images `make test-containers` needs on a machine no container registry answers, built here:
#   - a Python 3.11 bookworm base (debootstrap of Debian bookworm with its python3, `podman import`), on which
#     Dockerfile.api and Dockerfile.bridge are built (their BASE build argument);
#   - stand-ins for the two third-party images of docker-compose.yml, postgres and apache/kafka, on that base:
#     Debian's PostgreSQL 15, and the Kafka jars `make stack` fetches from Maven Central.
# Installs podman, runc and debootstrap with apt when missing (as root). The base is made once (~1 min) and kept;
# the stand-ins are rebuilt from podman's layer cache (seconds when nothing changed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../versions.env
source "$repo/stack/versions.env"
export CONTAINERS_CONF=$here/containers.conf
work=${STACK_DIR:-$repo/.stack}/containers
KAFKA_CACHE_DIR=${KAFKA_CACHE_DIR:-$repo/.cache}
BASE=localhost/warehouse-python-base:3.11-bookworm
say() { printf 'containers: %s\n' "$*"; }
die() { printf 'containers: %s\n' "$*" >&2; exit 1; }

# netavark and aardvark-dns: the network backend whose container networks resolve service names (podman's
# recommends, which --no-install-recommends would leave out; CNI without its dnsname plugin resolves none).
missing=()
for package in podman runc debootstrap netavark aardvark-dns; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "needs ${missing[*]}: sudo apt-get install ${missing[*]}"
  say "installing ${missing[*]} (apt)"
  apt-get update -q || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${missing[@]}" || die "could not install ${missing[*]}"
fi
mkdir -p "$work"

if ! podman image exists "$BASE"; then
  say "making $BASE with debootstrap (once, about a minute)"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $work/debootstrap.log"
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

build() {  # image, context
  say "building $1"
  podman build --quiet --network host --format docker --build-arg "BASE=$BASE" -t "$1" "$2" >/dev/null
}
build "localhost/warehouse-standin-postgres:$POSTGRES_MAJOR" "$here/postgres"

# The Kafka stand-in's context: its files, the broker's jars and the tools' jars (for the healthcheck's script).
tools=$KAFKA_CACHE_DIR/kafka-tools-$KAFKA_VERSION
if [[ ! -f $tools/.complete ]]; then
  say "fetching the Kafka $KAFKA_VERSION tools' jars from Maven Central (once) into $tools"
  mvn -B -q -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tools" >"$work/kafka-tools-fetch.log" 2>&1 \
    || die "could not fetch the Kafka tools' jars; see $work/kafka-tools-fetch.log"
  touch "$tools/.complete"
fi
libs=$("$repo/stack/stack.sh" fetch | tail -n 1)
context=$work/kafka-context
rm -rf "$context" && mkdir -p "$context"
cp -r "$here"/kafka/* "$repo/stack/kafka/log4j2.yaml" "$context/"
cp -r "$libs" "$context/libs" && cp -r "$tools" "$context/tools-libs"
build "localhost/warehouse-standin-kafka:$KAFKA_VERSION" "$context"
