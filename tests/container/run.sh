#!/usr/bin/env bash
# Container test: build the real image, run it with Compose, run the whole
# integration suite against it (the tests that start their own servers start
# containers of the same image: tests/servers.py), retrain into the checkpoints
# volume and reload the running api (SIGHUP, no restart) so that it serves the
# new model by name.
#
#   bash tests/container/run.sh            (what `make test-container` runs)
#
# Needs root on a Debian machine (installs docker.io, docker-compose and
# debootstrap with apt-get when missing, starts dockerd when it is not running;
# dockerd is left running afterwards so that its build cache stays warm).
# Docker Hub is not needed: scripts/container/base-image.sh builds a local
# stand-in for python:3.11-slim under a private name, passed to the build as
# the PYTHON_IMAGE build argument (SWIRL_PYTHON_IMAGE names another base image).
#
# Environment:
#   SWIRL_CONTAINER_REPORT   write the measurements (JSON) to this file
#   SWIRL_CONTAINER_TORCH    pypi (default): the product image, torch from PyPI
#                            (CUDA build, ~3 GB download on a cold cache);
#                            host: put this machine's `pip download torch==PIN`
#                            (a local CPU wheel where pip is set up with one)
#                            in scripts/container/wheels/ first: smaller image
#   SWIRL_CONTAINER_PROJECT  compose project name (default swirl-ci-<pid>)
#   SWIRL_CONTAINER_PORT     host port on 127.0.0.1 (default: a free one)
#   SWIRL_CONTAINER_GRPC_PORT  host port of the api's gRPC on 127.0.0.1 (default: a free one)
#   SWIRL_CONTAINER_TRAIN_STEPS  steps of the retraining job (default 200)
#   SWIRL_CONTAINER_READY_TIMEOUT  seconds to wait for readiness (default 300)
#   PYTHON                   interpreter with httpx/pytest (default .venv's)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/container/lib.sh
source scripts/container/lib.sh

PROJECT="${SWIRL_CONTAINER_PROJECT:-swirl-ci-$$}"
TORCH_MODE="${SWIRL_CONTAINER_TORCH:-pypi}"
TRAIN_STEPS="${SWIRL_CONTAINER_TRAIN_STEPS:-200}"
READY_TIMEOUT="${SWIRL_CONTAINER_READY_TIMEOUT:-300}"
TRAIN_NAME="retrained-ci"
TEST_LABEL="swirl-ci=$PROJECT"   # on every container the integration tests start
WHEELS_DIR="scripts/container/wheels"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

export COMPOSE_PROJECT_NAME="$PROJECT"
export SWIRL_IMAGE="${SWIRL_IMAGE:-swirl:latest}"
export SWIRL_BIND_ADDR=127.0.0.1           # the test's server stays on loopback
export SWIRL_TRAIN_NAME="$TRAIN_NAME"
unset SWIRL_CHECKPOINT                      # the image's default checkpoint first
COMPOSE_FILES=(-f docker-compose.yml)

log() { printf '\n=== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

compose() { "${COMPOSE[@]}" "${COMPOSE_FILES[@]}" "$@"; }

# ---------------------------------------------------------------- teardown
STATUS=1
cleanup() {
    local rc=$?
    set +e
    if [ "$STATUS" -ne 0 ] && [ "${#COMPOSE[@]}" -gt 0 ]; then
        echo "--- container test failed (rc=$rc); api logs:" >&2
        compose logs --no-color --tail=80 api >&2 2>/dev/null
    fi
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        # containers the integration tests started and could not stop (an interrupted run)
        docker ps -aq --filter "label=$TEST_LABEL" | xargs -r docker rm -f >/dev/null 2>&1
    fi
    if [ "${#COMPOSE[@]}" -gt 0 ]; then
        compose --profile train down -v --remove-orphans >/dev/null 2>&1
        compose down -v --remove-orphans >/dev/null 2>&1
    fi
    rm -f "$ROOT/$WHEELS_DIR"/*.whl
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        docker volume rm -f "${PROJECT}_checkpoints" >/dev/null 2>&1
    fi
    exit "$rc"
}
COMPOSE=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- docker
log "docker"
swirl_ensure_docker
swirl_setup_builder
swirl_detect_compose
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'

for f in pyproject.toml app/main.py model/train.py checkpoints/swiss-roll/checkpoint.json; do
    [ -e "$f" ] || swirl_die "$f is missing: nothing to containerise yet"
done

# ---------------------------------------------------------------- images
log "base image (the local stand-in for python:3.11-slim, unless SWIRL_PYTHON_IMAGE names one)"
t=$(now)
if [ -z "${SWIRL_PYTHON_IMAGE:-}" ]; then
    bash scripts/container/base-image.sh
    export SWIRL_PYTHON_IMAGE="localhost/swirl-python-standin:3.11"
fi
echo "base image $SWIRL_PYTHON_IMAGE ready in $(elapsed "$t" "$(now)") s"

log "torch for the image: $TORCH_MODE"
mkdir -p "$WHEELS_DIR"
# This folder belongs to the container tooling: only this run's choice in it.
rm -f "$WHEELS_DIR"/*.whl
case "$TORCH_MODE" in
    pypi) echo "torch from PyPI (the product image)" ;;
    host)
        torch_pin="$("$PYTHON" -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print(next(d for d in deps if re.match(r'torch\b', d)).replace(' ', ''))")"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version 3.11 --platform manylinux_2_28_x86_64 \
            -d "$WHEELS_DIR" "$torch_pin"
        ls -l "$WHEELS_DIR"
        ;;
    *) swirl_die "SWIRL_CONTAINER_TORCH must be pypi or host, not '$TORCH_MODE'" ;;
esac

log "build $SWIRL_IMAGE"
t=$(now)
# The intermediate stages are tagged so that they stay in the build cache when
# the dangling images of earlier builds are pruned below (each change of the
# dependencies would otherwise leave ~10 GB behind).
docker build --build-arg PYTHON_IMAGE="$SWIRL_PYTHON_IMAGE" --target deps -t "swirl-cache:deps-$TORCH_MODE" .
docker build --build-arg PYTHON_IMAGE="$SWIRL_PYTHON_IMAGE" --target build -t "swirl-cache:build-$TORCH_MODE" .
compose build api
BUILD_S=$(elapsed "$t" "$(now)")
rm -f "$WHEELS_DIR"/*.whl
docker image prune -f --filter "label=org.opencontainers.image.title=swirl" | tail -n 1
IMAGE_SIZE=$(docker image inspect --format '{{.Size}}' "$SWIRL_IMAGE")
echo "built in ${BUILD_S} s; image size ${IMAGE_SIZE} bytes"
docker image inspect --format 'user={{.Config.User}} cmd={{.Config.Cmd}} exposed={{.Config.ExposedPorts}}' "$SWIRL_IMAGE"
[ "$(docker image inspect --format '{{.Config.User}}' "$SWIRL_IMAGE")" != "" ] || swirl_die "image runs as root"

# ---------------------------------------------------------------- up
if [ -n "${SWIRL_CONTAINER_PORT:-}" ]; then
    SWIRL_PORT="$SWIRL_CONTAINER_PORT"
else
    SWIRL_PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
export SWIRL_PORT
BASE_URL="http://127.0.0.1:${SWIRL_PORT}"
# the api's gRPC port on the host (compose maps it to the image's 8001)
SWIRL_GRPC_PORT="${SWIRL_CONTAINER_GRPC_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export SWIRL_GRPC_PORT

# Seconds until GET $BASE_URL/readyz answers 200 (fails after READY_TIMEOUT).
wait_ready() {
    local start=$1 code cid state
    while :; do
        code="$("$PYTHON" - "$BASE_URL/readyz" <<'EOF' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print(0)
EOF
)"
        [ "$code" = "200" ] && break
        if [ "$(elapsed "$start" "$(now)" | cut -d. -f1)" -ge "$READY_TIMEOUT" ]; then
            swirl_die "not ready within ${READY_TIMEOUT}s (last /readyz status: $code)"
        fi
        cid="$(compose ps -q api)"
        if [ -n "$cid" ]; then
            state="$(docker inspect --format '{{.State.Status}} {{.RestartCount}}' "$cid")"
            case "$state" in
                "running 0" | "created 0") ;;
                *) swirl_die "the api container is not running cleanly (status, restarts: $state)" ;;
            esac
        fi
        sleep 0.2
    done
    elapsed "$start" "$(now)"
}

wait_healthy() {
    local cid status i
    cid="$(compose ps -q api)"
    for i in $(seq 1 "$READY_TIMEOUT"); do
        status="$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$cid")"
        case "$status" in
            healthy) echo "container health: healthy after ${i}s of polling"; return 0 ;;
            none) swirl_die "the container has no healthcheck" ;;
        esac
        sleep 1
    done
    docker inspect --format '{{json .State.Health}}' "$cid" >&2
    swirl_die "container not healthy within ${READY_TIMEOUT}s (status: $status)"
}

log "compose up (project $PROJECT, $BASE_URL)"
t=$(now)
compose up -d --no-build api
COLD_START_S=$(wait_ready "$t")
echo "cold start to ready: ${COLD_START_S} s"
wait_healthy

# ---------------------------------------------------------------- smoke
log "smoke check"
"$PYTHON" tests/container/smoke.py "$BASE_URL"

# ---------------------------------------------------------------- hardening
log "hardening: non-root user, read-only checkpoint mount, no secrets"
API_CID="$(compose ps -q api)"
uid="$(docker exec "$API_CID" id -u)"
[ "$uid" != "0" ] || swirl_die "the api container runs as root"
echo "runs as uid $uid"
mount_rw="$(docker inspect --format '{{range .Mounts}}{{if eq .Destination "/srv/checkpoints"}}{{.RW}}{{end}}{{end}}' "$API_CID")"
[ "$mount_rw" = "false" ] || swirl_die "the checkpoints volume is not mounted read-only in api (RW=$mount_rw)"
if docker exec "$API_CID" sh -c 'touch /srv/checkpoints/.probe' 2>/dev/null; then
    swirl_die "api could write into the checkpoints volume"
fi
if docker exec "$API_CID" sh -c 'touch /app/.probe' 2>/dev/null; then
    swirl_die "api could write into its root filesystem"
fi
echo "checkpoints volume and root filesystem are read-only"
secret_env="$(docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$SWIRL_IMAGE" | cut -d= -f1 | grep -iE 'token|secret|passw|api_?key|credential' || true)"
[ -z "$secret_env" ] || swirl_die "the image sets secret-looking variables: $secret_env"
leaked="$(docker run --rm --entrypoint sh "$SWIRL_IMAGE" -c 'ls -a /app /home/swirl 2>/dev/null | grep -E "^(\.git|\.env|\.venv|id_rsa|id_ed25519|\.ssh|\.netrc|\.pypirc)$" || true')"
[ -z "$leaked" ] || swirl_die "the image carries files that do not belong in it: $leaked"
echo "no secret-looking variables or files in the image"

# ---------------------------------------------------------------- integration
log "integration suite against the container"
# The shared server is the compose api (SWIRL_BASE_URL); the tests that need a server of
# their own (other settings, signals, exit codes, broken checkpoints, a model repository)
# start containers of the same image (SWIRL_CONTAINER_IMAGE, see tests/servers.py). The
# page tests run in Debian's Chromium when /usr/bin/chromium is there (`make browser`).
t=$(now)
SWIRL_BASE_URL="$BASE_URL" SWIRL_GRPC_TARGET="127.0.0.1:${SWIRL_GRPC_PORT}" \
    SWIRL_CONTAINER_IMAGE="$SWIRL_IMAGE" SWIRL_CONTAINER_LABEL="$TEST_LABEL" \
    "$PYTHON" -m pytest tests/integration tests/clients -q -p no:cacheprovider -rs
INTEGRATION_S=$(elapsed "$t" "$(now)")
echo "integration suite against the container: ${INTEGRATION_S} s"

# ---------------------------------------------------------------- retrain
log "train $TRAIN_STEPS steps into the volume (${PROJECT}_checkpoints:/srv/checkpoints/$TRAIN_NAME)"
OLD_ID="$("$PYTHON" tests/container/smoke.py "$BASE_URL" --print-id)"
t=$(now)
compose --profile train run --rm train --steps "$TRAIN_STEPS"
echo "trained in $(elapsed "$t" "$(now)") s"
NEW_SHA="$(compose --profile train run --rm --no-deps --entrypoint cat train \
    "/srv/checkpoints/$TRAIN_NAME/checkpoint.json" \
    | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["weights_sha256"])')"
echo "old model id: $OLD_ID"
echo "new weights sha256: $NEW_SHA"
[ "$NEW_SHA" != "$OLD_ID" ] || swirl_die "the retrained checkpoint has the default one's sha256"
# The model id depends on the weights alone: the same seeded training on this host's CPU
# must give the id the container's training gave.
HOST_RUN="$(mktemp -d)"
"$PYTHON" -m model.train --out "$HOST_RUN/retrained" --steps "$TRAIN_STEPS" --device cpu --no-progress >/dev/null
HOST_SHA="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["weights_sha256"])' "$HOST_RUN/retrained/checkpoint.json")"
rm -rf "$HOST_RUN"
echo "same training on the host: $HOST_SHA"
[ "$HOST_SHA" = "$NEW_SHA" ] || swirl_die "the host's model id $HOST_SHA differs from the container's $NEW_SHA for the same training"

log "reload: the running api picks the retrained model up on SIGHUP, without a restart"
API_CID="$(compose ps -q api)"
STARTED_AT="$(docker inspect --format '{{.State.StartedAt}}' "$API_CID")"
t=$(now)
"$PYTHON" tests/container/reload_check.py "$BASE_URL" "$TRAIN_NAME" "$NEW_SHA" -- "${COMPOSE[@]}" "${COMPOSE_FILES[@]}" kill -s SIGHUP api
RELOAD_S=$(elapsed "$t" "$(now)")
[ "$(compose ps -q api)" = "$API_CID" ] || swirl_die "the api container was replaced"
[ "$(docker inspect --format '{{.State.StartedAt}} {{.RestartCount}}' "$API_CID")" = "$STARTED_AT 0" ] \
    || swirl_die "the api container restarted during the reload"
echo "reloaded in ${RELOAD_S} s (including the load check); same container, started at $STARTED_AT"
"$PYTHON" tests/container/smoke.py "$BASE_URL"

# ---------------------------------------------------------------- report
STATUS=0
log "container test passed"
IMAGE_SIZE_H="$(awk -v b="$IMAGE_SIZE" 'BEGIN { printf "%.2f GB", b / 1e9 }')"
echo "image:               $SWIRL_IMAGE (torch: $TORCH_MODE)"
echo "image size:          $IMAGE_SIZE bytes ($IMAGE_SIZE_H)"
echo "build time:          $BUILD_S s"
echo "cold start to ready: $COLD_START_S s"
echo "integration suite:   $INTEGRATION_S s"
echo "compose:             ${COMPOSE[*]}"
if [ -n "${SWIRL_CONTAINER_REPORT:-}" ]; then
    mkdir -p "$(dirname "$SWIRL_CONTAINER_REPORT")"
    cat >"$SWIRL_CONTAINER_REPORT" <<EOF
{
  "image": "$SWIRL_IMAGE",
  "torch": "$TORCH_MODE",
  "image_size_bytes": $IMAGE_SIZE,
  "build_s": $BUILD_S,
  "cold_start_to_ready_s": $COLD_START_S,
  "reload_s": $RELOAD_S,
  "integration_s": $INTEGRATION_S,
  "compose": "${COMPOSE[*]}"
}
EOF
    echo "report written to $SWIRL_CONTAINER_REPORT"
fi
