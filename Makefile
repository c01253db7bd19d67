# dsk — the front door. `make demo` runs the main job on a small example; `make test` runs every test.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
DSK_DEBUG   := target/debug/dsk
DSK_RELEASE := target/release/dsk
DEMO    := target/demo


.PHONY: all install build release demo test test-rust test-interop lint fmt fixtures bench bench-large bench-cluster doc clean fuzz-diff pictures

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

# The lesson's arrays, small: create them, describe them, look at a corner.
demo: release
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(DSK_RELEASE) create ones $(DEMO)/ones.zarr --shape 1000,4000 --chunks 1000,1000
	$(DSK_RELEASE) info $(DEMO)/ones.zarr
	$(DSK_RELEASE) create random $(DEMO)/x.zarr --shape 5000,4000 --chunks 1000,1000 --dist normal --seed 42
	$(DSK_RELEASE) info $(DEMO)/x.zarr
	$(DSK_RELEASE) export $(DEMO)/x.zarr --slice '0:3, 0:4' --format csv
	$(DSK_RELEASE) transform $(DEMO)/x.zarr $(DEMO)/cos2.zarr --expr 'cos(x)**2' --explain
	$(DSK_RELEASE) transform $(DEMO)/x.zarr $(DEMO)/cos2.zarr --expr 'cos(x)**2'
	$(DSK_RELEASE) eval 'x * x[::-1, ::-1]' x=$(DEMO)/x.zarr -o $(DEMO)/flip.zarr
	$(DSK_RELEASE) eval 'x[0, 0] * x[-1, -1]' x=$(DEMO)/x.zarr
	$(DSK_RELEASE) export $(DEMO)/flip.zarr --slice '0:2, 0:4' --format csv
	@echo "--- the lesson: (x * x[::-1, ::-1]).mean() over a 6.4 GB array of ones (generated, never stored)"
	$(DSK_RELEASE) eval '(ones((200000, 4000), chunks=(1000, 1000)) * ones((200000, 4000), chunks=(1000, 1000))[::-1, ::-1]).mean()' --memory 1GiB
	@echo "--- the lesson: (cos(x)**2).mean(axis=1), first rows"
	$(DSK_RELEASE) eval '(cos(ones((200000, 4000), chunks=(1000, 1000)))**2).mean(axis=1)[0:3]' --memory 1GiB --format csv
	$(DSK_RELEASE) reduce $(DEMO)/x.zarr --op mean
	@echo "--- see the work: the plan's picture, the run's report, the result's plot"
	$(DSK_RELEASE) graph '(x * x[::-1, ::-1]).mean()' x=$(DEMO)/x.zarr -o $(DEMO)/graph.svg
	$(DSK_RELEASE) reduce $(DEMO)/cos2.zarr $(DEMO)/row_means.zarr --op mean --axis 1 --report $(DEMO)/report.html
	$(DSK_RELEASE) plot $(DEMO)/row_means.zarr -o $(DEMO)/row_means.png
	$(DSK_RELEASE) plot $(DEMO)/x.zarr -o $(DEMO)/x.png
	@echo "open $(DEMO)/graph.svg, $(DEMO)/report.html, $(DEMO)/row_means.png and $(DEMO)/x.png"
	$(DSK_RELEASE) rechunk $(DEMO)/x.zarr $(DEMO)/tall.zarr --chunks 5000,10 --memory 256MiB --explain
	$(DSK_RELEASE) rechunk $(DEMO)/x.zarr $(DEMO)/tall.zarr --chunks 5000,10 --memory 256MiB

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

# A rechunk larger than RAM (25.6 GB, --memory 1GiB; needs ~30 GB of free disk).
bench-large: release
	bench/peers/large_rechunk.sh $(abspath $(DSK_RELEASE)) $(abspath bench/data/large) docs/benchmarks-large.md

# What a cluster costs: dsk through a real Slurm and a real Dask cluster here, against local runs.
bench-cluster: release $(VENV)/.stamp
	$(VPY) bench/cluster.py

# dsk on PATH: make install PREFIX=~/.local (default /usr/local), the release build.
PREFIX ?= /usr/local
install: release
	install -d $(PREFIX)/bin
	install -m 755 $(DSK_RELEASE) $(PREFIX)/bin/dsk

doc:
	$(CARGO) doc --no-deps

clean:
	$(CARGO) clean
	rm -rf $(DEMO)
