# dsk — the front door. `make demo` runs the main job on a small example; `make test` runs every test.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
DSK_DEBUG   := target/debug/dsk
DSK_RELEASE := target/release/dsk
DEMO    := target/demo


.PHONY: all man docs docs-check install build release demo test test-rust test-interop lint fmt fixtures bench bench-build bench-large bench-cluster doc clean fuzz-diff pictures

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# The Python oracle (zarr-python + NumPy, pinned) for the interop tests and the fixtures.
$(VENV)/.stamp: requirements-test.txt python/pyproject.toml python/dsk_dask/*.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements-test.txt
	# dsk's package for --executor dask, as a user installs it (the tests' Dask workers import it)
	$(VPY) -m pip install --quiet ./python
	touch $@

# The lesson's steps on small arrays, each saying what it shows and what to expect.
demo: release
	@scripts/demo.sh $(DSK_RELEASE) $(DEMO)

test: test-rust test-interop

test-rust:
	$(CARGO) fmt --check
	$(CARGO) test

test-interop: $(VENV)/.stamp build
	DSK=$(abspath $(DSK_DEBUG)) $(VPY) -m pytest -q --durations=15 --timeout=900 tests/interop

# Differential fuzzing against NumPy, a long campaign: make fuzz-diff N=100000 SEED=7 [JOBS=4]
# [DSK=target/release/dsk]. Failures are shrunk and printed as shell commands (tests/interop/difftest.py).
N    ?= 100000
SEED ?= 1
fuzz-diff: $(VENV)/.stamp build
	DSK=$(abspath $(or $(DSK),$(DSK_DEBUG))) $(VPY) tests/interop/difftest.py --n $(N) --seed $(SEED) $(if $(JOBS),--jobs $(JOBS))

# The screenshots of docs/observe.md, from real runs of the lesson in headless chromium.
pictures: release $(VENV)/.stamp
	$(VPY) scripts/observe_pictures.py

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# Regenerate fixtures/ with zarr-python (committed; cargo test needs no Python).
fixtures: $(VENV)/.stamp
	$(VPY) fixtures/make_fixtures.py

# Side-by-side benchmarks against Dask (and Cubed); writes docs/benchmarks.md.
bench: release
	$(MAKE) -C bench

# Cold build time, binary size and speed of release profiles (LTO, codegen units).
bench-build:
	$(MAKE) -C bench build-profiles

# Larger than RAM (docs/benchmarks-large.md): a rechunk (25.6 GB, --memory 1GiB; ~30 GB of free
# disk), then the create → transform → reduce pipeline on 32 GB against Dask (~70 GB; ~40 minutes).
bench-large: release
	bench/peers/large_rechunk.sh $(abspath $(DSK_RELEASE)) $(abspath bench/data/large) docs/benchmarks-large.md
	$(MAKE) -C bench .venv/.stamp
	bench/.venv/bin/python bench/large_pipeline.py --dsk $(DSK_RELEASE) --data bench/data/large --doc docs/benchmarks-large.md

# What a cluster costs: dsk through a real Slurm and a real Dask cluster here, against local runs.
bench-cluster: release $(VENV)/.stamp
	$(VPY) bench/cluster.py

# dsk on PATH: make install PREFIX=~/.local (default /usr/local), the release build.
PREFIX ?= /usr/local
install: release
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1
	install -m 755 $(DSK_RELEASE) $(PREFIX)/bin/dsk
	$(DSK_RELEASE) man $(PREFIX)/share/man/man1

# docs/tutorial.md (and its pictures in docs/img) from docs/tutorial.src.md, by running it
docs: release $(VENV)/.stamp
	$(VPY) scripts/tutorial.py --dsk $(DSK_RELEASE)

# fail when docs/tutorial.md no longer matches what its commands print (make test runs it too)
docs-check: build $(VENV)/.stamp
	$(VPY) scripts/tutorial.py --dsk $(DSK_DEBUG) --check

# The manual pages (dsk.1, dsk-reduce.1, …) in target/man: man -l target/man/dsk-reduce.1
man: build
	$(DSK_DEBUG) man target/man

doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
	rm -rf $(DEMO)
