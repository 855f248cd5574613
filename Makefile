# Swirl: the two commands a newcomer needs are `make serve` and `make test`.
# Each one creates .venv when missing and installs the pinned dependencies first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.ray-installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: serve serve-ray lock-ray test test-fast test-container lint train train-guided evaluate bench figures screenshot lock clean browser

$(STAMP): requirements/lock.txt pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# the Python client and its swirl-client command (its dependencies, httpx and numpy, are in the lock)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e clients/python
	touch $(STAMP)

## serve: serve every model under checkpoints/ (swiss-roll the default) on http://$(HOST):$(PORT)
serve: $(STAMP)
	SWIRL_HOST=$${SWIRL_HOST:-$(HOST)} SWIRL_PORT=$${SWIRL_PORT:-$(PORT)} $(PY) -m app

# the optional extra swirl[ray]: Ray Serve, pinned in requirements/ray.txt, never needed by `make serve`
$(RAY_STAMP): $(STAMP) requirements/ray.txt
	$(PY) -m pip install --quiet -r requirements/lock.txt -r requirements/ray.txt
	touch $(RAY_STAMP)

## serve-ray: start a local Ray on this machine and deploy deploy/ray/serve.yaml on it (http://127.0.0.1:8000)
serve-ray: $(RAY_STAMP)
	$(PY) -m app.ray_serve --config deploy/ray/serve.yaml

## browser: Debian's Chromium for the page test (never a downloaded browser)
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: /usr/bin/chromium missing and not root: the browser test will be skipped (sudo apt-get install chromium)"; fi; \
	fi

## test: lint, type-check and run the whole test suite (model, app, integration, browser, Ray cluster)
test: $(STAMP) $(RAY_STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app model clients/python/swirl_client
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; exit 1; fi; exit $$rc

## test-fast: the model and in-process app tests only
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/model tests/app

## test-container: build the image, run it with docker compose and run the integration suite (browser included) against it
test-container: $(STAMP) browser
	bash tests/container/run.sh

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy app model clients/python/swirl_client

## train: retrain the default model with its seed and recipe, then evaluate it (timings: benchmarks/RESULTS.md).
## The model id is reproducible on one machine and torch build; another CPU may give another (docs/quality.md).
train: $(STAMP)
	@echo "make train: 1. training checkpoints/swiss-roll (70,000 steps: 189-336 s on a 2-core CPU; the same model id on the same machine, another CPU may give another: docs/quality.md)"
	@echo "            2. evaluating it with python -m model.evaluate (4 samplers: about 40 s on a quiet 2-core machine, 205 s with its cores shared by other jobs; see benchmarks/RESULTS.md)"
	$(PY) -m model.train --out checkpoints/swiss-roll --overwrite --evaluate

## train-guided: retrain the guided checkpoint (arc-position condition, docs/guidance.md), then evaluate it
train-guided: $(STAMP)
	@echo "make train-guided: 1. training checkpoints/swiss-roll-guided (70,000 steps, seed 0: 313 s of CPU, one thread; docs/guidance.md)"
	@echo "                   2. evaluating it (null DDPM-50, the whole roll for w in 0, 0.25, 0.5, 1, fixed u; 427 s on the shared 2-core machine)"
	$(PY) -m model.train --out checkpoints/swiss-roll-guided --overwrite --condition arc_position --seed 0 --threads 1 --evaluate

## evaluate: re-evaluate the shipped checkpoint and store the results in its checkpoint.json
evaluate: $(STAMP)
	@echo "make evaluate: python -m model.evaluate checkpoints/swiss-roll (about 40 s on a quiet 2-core machine, 205 s with its cores shared by other jobs)"
	$(PY) -m model.evaluate checkpoints/swiss-roll

bench: $(STAMP)
	$(PY) benchmarks/sampler.py
	$(PY) benchmarks/service.py

figures: $(STAMP)
	$(PY) scripts/make_figure.py

screenshot: $(STAMP) browser
	$(PY) scripts/screenshot_page.py

RAY_ONLY = grep -viE "^($$(sed -n 's/==.*//p' requirements/ray.txt | paste -sd'|' -))=="

## lock: re-pin requirements/lock.txt from the current .venv (the Ray extra's packages stay in requirements/ray.txt)
lock:
	{ head -n 2 requirements/lock.txt; $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | $(RAY_ONLY); } > requirements/lock.tmp && mv requirements/lock.tmp requirements/lock.txt

## lock-ray: re-pin requirements/ray.txt: what the .venv has beyond requirements/lock.txt
lock-ray:
	{ head -n 3 requirements/ray.txt; $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' | grep -vixF -f requirements/lock.txt; } > requirements/ray.tmp && mv requirements/ray.tmp requirements/ray.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
