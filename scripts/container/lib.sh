# shellcheck shell=bash
# Shared helpers for the container tooling (sourced, not executed).
#
#   swirl_ensure_docker   install docker/debootstrap/compose if missing, start
#                         dockerd if it is not answering, wait until it is.
#   swirl_detect_compose  set the COMPOSE array to `docker compose` (plugin,
#                         preferred) or `docker-compose` (v1, Debian package).
#
# Both need root (apt-get, dockerd) unless docker is already usable.

swirl_log() { printf '[swirl-container] %s\n' "$*" >&2; }

swirl_die() { swirl_log "ERROR: $*"; exit 1; }

_swirl_apt_updated=0
_swirl_apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        swirl_die "need root to apt-get install $*"
    fi
    if [ "$_swirl_apt_updated" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _swirl_apt_updated=1
    fi
    swirl_log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

swirl_docker_up() { docker info >/dev/null 2>&1; }

swirl_ensure_docker() {
    local pkgs=()
    command -v docker >/dev/null 2>&1 || pkgs+=(docker.io)
    command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
        pkgs+=(docker-compose)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        # de-duplicate
        mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
        _swirl_apt_install "${pkgs[@]}"
    fi

    if swirl_docker_up; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        swirl_die "docker daemon is not reachable and we are not root to start it"
    fi
    local log="${SWIRL_DOCKERD_LOG:-/tmp/dockerd.log}"
    swirl_log "starting dockerd (log: $log)"
    # Detached from our stdio so that it never holds a caller's pipes open.
    setsid nohup dockerd </dev/null >>"$log" 2>&1 &
    local i
    for i in $(seq 1 60); do
        if swirl_docker_up; then
            swirl_log "dockerd is up after ${i}s"
            return 0
        fi
        sleep 1
    done
    tail -n 30 "$log" >&2 || true
    swirl_die "dockerd did not come up within 60s"
}

# The Docker CLI may be newer than the daemon and lack the buildx plugin; then
# the classic builder is the one that works (the Dockerfiles need no BuildKit).
swirl_setup_builder() {
    if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
        export DOCKER_BUILDKIT=0
    fi
    # docker-compose v1: build through the docker CLI (same builder as above).
    export COMPOSE_DOCKER_CLI_BUILD="${COMPOSE_DOCKER_CLI_BUILD:-1}"
}

swirl_detect_compose() {
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        swirl_die "neither 'docker compose' nor 'docker-compose' is available"
    fi
    swirl_log "compose command: ${COMPOSE[*]}"
}
