# Local stand-in for the official python:3.11-slim image.
#
# Docker Hub cannot be reached from the build/CI machines, so
# scripts/container/base-image.sh builds this image on top of a debootstrapped
# Debian bookworm (minbase) root filesystem and tags it
# `localhost/swirl-python-standin:3.11` (never the real image's name).
# Debian bookworm ships CPython 3.11, the same minor version as the real image.
#
# Only test infrastructure uses this file; the product Dockerfile at the top of
# the repository is a plain `FROM python:3.11-slim` and works unchanged on a
# machine that can pull the real image.
FROM swirl-bookworm-minbase
LABEL swirl.standin="1"

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

# apt settings mirrored from the host (its mirror may be a dated snapshot and
# its clock may not match the Release files).
RUN printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAPT::Install-Recommends "false";\n' \
        > /etc/apt/apt.conf.d/99swirl-standin \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \
 # The real image lets `pip install` write to the system interpreter; Debian's
 # PEP 668 marker would refuse that, so drop it (and set the env switch too).
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# The host's CA bundle (it may contain the CA of an intercepting proxy in front
# of PyPI); without it pip inside derived images cannot reach the index.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180

LABEL org.opencontainers.image.description="Local stand-in for python:3.11-slim (Debian bookworm python3)" \
      io.swirl.standin="1"

CMD ["python3"]
