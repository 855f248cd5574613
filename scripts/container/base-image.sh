#!/usr/bin/env bash
# Build a local stand-in for the official `python:3.11-slim` image, under a
# private name that no registry serves: localhost/swirl-python-standin:3.11.
#
# Docker Hub is not reachable from our build/CI machines, but the Debian mirror
# is.  So: debootstrap a minimal bookworm root filesystem, import it as
# `swirl-bookworm-minbase`, and build scripts/container/standin.Dockerfile on
# top of it (Debian's python3 3.11 + venv + pip + the host CA bundle), tagged
# with that private name.  The product Dockerfile builds unchanged, given
# `--build-arg PYTHON_IMAGE=localhost/swirl-python-standin:3.11` (Compose passes
# $SWIRL_PYTHON_IMAGE).  Never tagging it `python:3.11-slim` keeps later builds on
# this host from silently using the stand-in in place of the real image.
#
# Idempotent and cached:
#   * nothing is done if the stand-in already exists; SWIRL_STANDIN_FORCE=1 rebuilds;
#   * a `python:3.11-slim` that an earlier version of this script built (label
#     swirl.standin=1, or our apt settings file in its history) is untagged, so
#     that name is left to the real image;
#   * the debootstrap result is kept as a tarball in $SWIRL_STANDIN_CACHE
#     (default /var/cache/swirl-standin), so a rebuild skips debootstrap.
#
# Environment:
#   SWIRL_STANDIN_CACHE    cache directory (default /var/cache/swirl-standin)
#   SWIRL_STANDIN_FORCE    1: rebuild the images even if the tag exists
#   SWIRL_DEBIAN_MIRROR    Debian mirror URL (default: the one apt uses here)
#   SWIRL_DEBIAN_SUITE     default bookworm
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/container/lib.sh
source "$HERE/lib.sh"

TARGET_TAG="${SWIRL_STANDIN_TAG:-localhost/swirl-python-standin:3.11}"
OLD_MISLEADING_TAG="python:3.11-slim"
MINBASE_TAG="swirl-bookworm-minbase"
SUITE="${SWIRL_DEBIAN_SUITE:-bookworm}"
CACHE="${SWIRL_STANDIN_CACHE:-/var/cache/swirl-standin}"
TARBALL="$CACHE/$SUITE-minbase.tar"
FORCE="${SWIRL_STANDIN_FORCE:-0}"
CA_BUNDLE="${SWIRL_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

# The mirror this machine's apt uses for the main Debian archive (not the
# security archive).  Handles deb822 *.sources and one-line sources.list.
detect_mirror() {
    local f url=""
    shopt -s nullglob
    for f in /etc/apt/sources.list.d/*.sources; do
        url="$(awk -v suite="$SUITE" '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i);   uris = $i }
                    if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); suites = " " $i " " }
                }
                if (uris != "" && index(suites, " " suite " ") > 0) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")"
        [ -n "$url" ] && break
    done
    if [ -z "$url" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            url="$(awk -v suite="$SUITE" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f")"
            [ -n "$url" ] && break
        done
    fi
    shopt -u nullglob
    printf '%s\n' "${url:-http://deb.debian.org/debian}"
}

main() {
    swirl_ensure_docker
    swirl_setup_builder

    # An earlier stand-in: labelled, or (before the label) built with our apt settings file.
    if [ "$(docker image inspect --format '{{ index .Config.Labels "swirl.standin" }}' "$OLD_MISLEADING_TAG" 2>/dev/null || true)" = "1" ] \
        || docker history --no-trunc "$OLD_MISLEADING_TAG" 2>/dev/null | grep -q 99swirl-standin; then
        swirl_log "untagging $OLD_MISLEADING_TAG: an earlier stand-in, not the real image"
        docker image rm "$OLD_MISLEADING_TAG" >/dev/null
    fi
    if [ "$FORCE" != "1" ] && docker image inspect "$TARGET_TAG" >/dev/null 2>&1; then
        swirl_log "$TARGET_TAG already present locally; nothing to do"
        return 0
    fi

    if [ "$FORCE" = "1" ] || ! docker image inspect "$MINBASE_TAG" >/dev/null 2>&1; then
        mkdir -p "$CACHE"
        if [ ! -s "$TARBALL" ]; then
            local mirror rootfs
            mirror="${SWIRL_DEBIAN_MIRROR:-$(detect_mirror)}"
            rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
            swirl_log "debootstrap --variant=minbase $SUITE from $mirror (a few minutes)"
            if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" \
                    >"$CACHE/debootstrap.log" 2>&1; then
                tail -n 40 "$CACHE/debootstrap.log" >&2 || true
                rm -rf "$rootfs"
                swirl_die "debootstrap failed (log: $CACHE/debootstrap.log)"
            fi
            # Drop the apt caches debootstrap leaves behind; they are not needed.
            rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
            tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
            mv "$TARBALL.tmp" "$TARBALL"
            rm -rf "$rootfs"
        else
            swirl_log "using cached root filesystem $TARBALL"
        fi
        swirl_log "docker import -> $MINBASE_TAG"
        docker import -c 'CMD ["/bin/bash"]' - "$MINBASE_TAG" <"$TARBALL" >/dev/null
    fi

    [ -r "$CA_BUNDLE" ] || swirl_die "CA bundle $CA_BUNDLE not found"
    mkdir -p "$CACHE"
    local ctx
    ctx="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$ctx'" RETURN
    cp "$HERE/standin.Dockerfile" "$ctx/Dockerfile"
    cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
    swirl_log "building $TARGET_TAG stand-in"
    if ! docker build -t "$TARGET_TAG" "$ctx" >"$CACHE/standin-build.log" 2>&1; then
        tail -n 40 "$CACHE/standin-build.log" >&2 || true
        swirl_die "building the $TARGET_TAG stand-in failed (log: $CACHE/standin-build.log)"
    fi
    swirl_log "built $TARGET_TAG ($(docker image inspect --format '{{.Size}}' "$TARGET_TAG") bytes)"
}

main "$@"
