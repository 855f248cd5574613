# Swirl: DDPM sampling service.
#
#   docker build -t swirl:latest .
#   docker run --rm -p 8000:8000 -p 8001:8001 swirl:latest   # CPU; HTTP on 8000, gRPC on 8001
#   docker run --rm --gpus all -p 8000:8000 -e SWIRL_DEVICE=cuda swirl:latest
#
# One image for CPU and GPU: the runtime dependencies come from PyPI, and PyPI's
# torch wheel carries CUDA (the NVIDIA libraries come in as pip dependencies), so
# with `--gpus all` on an NVIDIA host the same image runs on the GPU.  That
# makes the image large (about 5 GB); a cold build downloads about 3 GB.
#
# Optional, for builders without fast access to PyPI's CUDA wheels: any wheels
# put in scripts/container/wheels/ (git-ignored) are offered to pip through
# --find-links.  A local CPU-only `torch-X+cpu` wheel placed there satisfies the
# `torch==X` pin and wins over PyPI's wheel (a local version label sorts
# higher), giving a much smaller CPU-only image.  The folder is empty by
# default, so a plain build uses PyPI alone.
#
# A CPU-only image (about 1.6 GB instead of 5.6 GB), either way:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t swirl:cpu .
#     (pip also looks at PyTorch's CPU index; its `torch==X+cpu` satisfies the pin and wins)
#   or put a CPU wheel `torch-X+cpu-….whl` in scripts/container/wheels/ (see above).
#
# Works with the classic builder and with BuildKit (no BuildKit-only syntax).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# deps: a virtual environment with the runtime dependencies declared in
# pyproject.toml, at the versions pinned in requirements/lock.txt (used as
# constraints: the versions the test suite ran with; the lock's dev-only
# packages are not installed).  Only those two files (and the optional wheels)
# feed this stage, so its multi-GB layer stays cached across code changes.
FROM ${PYTHON_IMAGE} AS deps
# Empty: PyPI only. A package index URL (e.g. PyTorch's CPU wheels) to search as well.
ARG TORCH_INDEX_URL=
LABEL org.opencontainers.image.title="swirl"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY scripts/container/wheels/ /tmp/wheels/
COPY pyproject.toml requirements/lock.txt ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project'].get('dependencies', []); print('\n'.join(deps))" \
        > /tmp/requirements.txt \
 && cat /tmp/requirements.txt \
 && pip install --no-cache-dir --find-links /tmp/wheels ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -c lock.txt -r /tmp/requirements.txt

# ---------------------------------------------------------------------------
# build: install the project itself (`pip install .`) on top of the
# dependencies, and keep its wheel for the runtime stage.
FROM deps AS build
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist /src \
 && pip install --no-cache-dir --no-deps /dist/*.whl \
 && pip check \
 # Checkpoints are written with private modes (0700 directory, 0600 weights);
 # the runtime user must be able to read the shipped one.
 && chmod -R a+rX,go-w /src/checkpoints

# ---------------------------------------------------------------------------
# runtime
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="swirl" \
      org.opencontainers.image.description="Swirl: DDPM sampling service (CPU, or GPU with --gpus all)"

# Non-root user; /srv/checkpoints is where a volume of trained checkpoints is
# mounted (its ownership seeds a fresh named volume, so the user can write it).
RUN groupadd --system --gid 10001 swirl \
 && useradd --system --uid 10001 --gid swirl --home-dir /home/swirl --create-home \
        --shell /usr/sbin/nologin swirl \
 && mkdir -p /srv/checkpoints \
 && chown swirl:swirl /srv/checkpoints

# The dependency layer (unchanged unless pyproject.toml changes) ...
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# ... then the project's own small wheel (offline: --no-deps).
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/dist

WORKDIR /app
# The shipped models (the default `swiss-roll` and the others in the repo);
# trained ones are mounted under /srv/checkpoints and served beside them.
COPY --from=build /src/checkpoints/ /app/checkpoints/

# SWIRL_WORKERS=0: one server process per CPU core the container may use (one on a GPU).
# SWIRL_GRPC_PORT: the Open Inference Protocol over gRPC (docs/clients.md); 0 turns it off.
ENV SWIRL_HOST=0.0.0.0 \
    SWIRL_PORT=8000 \
    SWIRL_GRPC_PORT=8001 \
    SWIRL_WORKERS=0 \
    SWIRL_CHECKPOINT=/app/checkpoints/swiss-roll \
    SWIRL_MODELS=/app/checkpoints:/srv/checkpoints \
    HOME=/home/swirl \
    XDG_CACHE_HOME=/tmp/.cache

USER swirl
EXPOSE 8000 8001

# Liveness, without curl: the image has Python.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SWIRL_PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "app"]
