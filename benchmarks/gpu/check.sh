#!/usr/bin/env bash
# `make gpu-check`, on a bare GPU machine (after `make gpu-pack` here, with .gpu/ carried):
# installs the packed wheels beside the machine's torch, then runs the CUDA tests and
# `visiontl bench --quick` for mobilenet_v2 and vgg19. Results go to $OUT (or
# benchmarks/results/gpu-check): cuda-tests.log and bench/{results.json,results.md,*.png}.
set -uo pipefail
PYTHON=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results/gpu-check}
mkdir -p "$DEST"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  || { echo "installing the packed wheels failed (run make gpu-pack first)"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" VISIONTL_CACHE="$PWD/.gpu/cache" VISIONTL_OFFLINE=1 PYTHONUNBUFFERED=1 \
  YOLO_CONFIG_DIR=/tmp/yolo MPLCONFIGDIR=/tmp/mpl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
"$PYTHON" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider 2>&1 | tee "$DEST/cuda-tests.log"
tests=${PIPESTATUS[0]}
"$PYTHON" -m visiontl bench --backbones mobilenet_v2 vgg19 --quick --out "$DEST/bench-run" 2>&1 | tail -n 60
bench=${PIPESTATUS[0]}
mkdir -p "$DEST/bench"
cp "$DEST"/bench-run/results.* "$DEST"/bench-run/*.png "$DEST/bench/" 2>/dev/null
echo "cuda tests: exit $tests; bench: exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
