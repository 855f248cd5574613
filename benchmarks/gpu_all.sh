#!/usr/bin/env bash
# Every GPU check and figure of issue 14 in one call (a few minutes), figures into $OUT (or ./gpu-out).
#   bash benchmarks/gpu_all.sh
# On the device machine, wheels the image lacks are carried in .whl/ and installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
echo "== GPU tests"
timeout 50 $PY -m pytest -q -p no:cacheprovider tests/model/test_graphs.py tests/model/test_engine.py 2>&1 | tee "$OUT/tests.txt"
echo "== in-process compute"
timeout 60 $PY benchmarks/gpu.py --repeats ${REPEATS:-5} --sizes ${SIZES:-1000 10000 100000 1000000} --json "$OUT/gpu.json" --tf32 2>&1 | tee "$OUT/gpu.txt"
echo "== serving"
timeout 100 $PY benchmarks/gpu_serving.py --duration ${DURATION:-8} --rounds 5 --json "$OUT/serving.json" 2>&1 | tee "$OUT/serving.txt"
