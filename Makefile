# The two commands of the README:
#   make demo   the conformance report over every adapter (docs/conformance.md)
#   make test   everything CI runs: fmt, clippy, tests, docs, the GTK self-test
# Both install missing system packages first (scripts/install-deps.sh).
# And two long runs (docs/reliability.md), whose short versions are in
# make test (cargo test -p oneloop-reliability):
#   make fuzz   every transport on every loop mode with random seeds
#   make soak   mixed load on every loop mode; writes docs/reliability.md

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo test deps fmt clippy unit polling doc package gtk-selftest winit-selftest bench fuzz soak perf-gate perf-gate-update bench-echo bench-icount bench-10k

# Runs every adapter's conformance suite (cargo test --workspace --test
# conformance), then prints the guarantee x adapter matrix and writes it;
# then the interop matrix (every loop mode x the libraries riding on it).
demo: deps
	$(CARGO) run -p oneloop-conformance --bin oneloop-report -- --workspace --write docs/conformance.md
	ONELOOP_INTEROP_REPORT=$(CURDIR)/docs/interop.md $(CARGO) test -q -p oneloop-interop --test matrix

test: deps fmt clippy unit polling doc package gtk-selftest winit-selftest python-test perf-gate

deps:
	@scripts/install-deps.sh

fmt:
	$(CARGO) fmt --all --check

# Then core without its optional parts and with each alone: what an adapter
# builds (features net, process, signal; all on by default).
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	for f in "" net process signal; do \
		$(CARGO) clippy -p oneloop --no-default-features --features "$$f" -- -D warnings || exit 1; \
	done

# --no-fail-fast: one failing test binary must not hide the others' results.
unit:
	$(CARGO) test --workspace --no-fail-fast

# The default loop's portable Selector (the `polling` crate: kqueue, event
# ports, poll()) and subprocesses without pidfds, as every OS but Linux and
# Android runs them, put through the whole conformance suite here on Linux
# (core/src/native/mod.rs).
polling:
	RUSTFLAGS="--cfg oneloop_polling" CARGO_TARGET_DIR=$(CURDIR)/target/polling \
		$(CARGO) test -p oneloop-conformance --test conformance

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# Every library crate packages and its tarball builds, as `cargo publish`
# would check (the examples, the bench, the interop matrix and the
# reliability checks are not published).
# The check builds each crate against its siblings' tarballs as if they came
# from a registry, and cargo takes registry crates to be immutable: it never
# unpacks one again while its folder under $CARGO_HOME/registry/src/-<hash>/
# (the nameless local registry) is there, and the tarballs' fixed mtimes
# make an old build of one look fresh. So a crate would be checked against a
# stale copy of core (CI failed on exactly that). Remove both first; the
# check builds in its own target folder, where every oneloop crate is such a
# registry copy, so that only those are rebuilt.
PACKAGE_TARGET := $(CURDIR)/target/package-check
package:
	rm -rf "$${CARGO_HOME:-$$HOME/.cargo}"/registry/src/-*/oneloop-* $(PACKAGE_TARGET)/debug/.fingerprint/oneloop-*
	CARGO_TARGET_DIR=$(PACKAGE_TARGET) $(CARGO) package --workspace --exclude oneloop-examples --exclude oneloop-bench --exclude oneloop-interop --exclude oneloop-reliability --allow-dirty

# The GTK example drives itself and checks its window, under a virtual X server.
gtk-selftest:
	@if [ -f examples/src/bin/gtk_dashboard.rs ]; then \
		$(CARGO) build -p oneloop-examples --bin gtk_dashboard && \
		xvfb-run -a -s "-screen 0 1024x768x24" $(CARGO) run -q -p oneloop-examples --bin gtk_dashboard -- --self-test; \
	else echo "gtk-selftest: skipped (the GTK example is not in the tree yet)"; fi

# The winit example hosts oneloop in guest mode and checks its window, read
# back from the X server, under a virtual X server.
winit-selftest:
	$(CARGO) build -p oneloop-examples --bin winit_echo
	xvfb-run -a -s "-screen 0 1024x768x24" $(CARGO) run -q -p oneloop-examples --bin winit_echo -- --self-test

bench: deps
	$(CARGO) bench -p oneloop-bench

# Fuzz every transport (TCP, Unix, UDP, pipes, subprocesses) on all nine
# loop modes with random seeds for FUZZ_SECONDS; every failing seed is
# printed with the command that replays it, and the run fails.
FUZZ_SECONDS ?= 600
fuzz: deps
	$(CARGO) run -p oneloop-reliability --bin oneloop-fuzz -- --seconds $(FUZZ_SECONDS)

# Mixed load (echo, timers, threadsafe calls, subprocesses, signals, fuzz
# runs, bad input) on each of the nine loop modes for SOAK_SECONDS each,
# one after another; writes the figures into docs/reliability.md.
SOAK_SECONDS ?= 60
soak: deps
	$(CARGO) run -p oneloop-reliability --bin oneloop-soak -- --seconds $(SOAK_SECONDS) --write docs/reliability.md

# The perf gate (docs/benchmarks.md, "The perf gate"): user-space
# instruction counts under callgrind of call_soon, a timer, a cross-thread
# call and one echo request (protocol and streams) on the default loop and
# every adapter, with each host's own primitive and the plain-Rust floor in
# the same run; fails when a count is more than 10 % above the one recorded
# in bench/icount-baseline.tsv. Instruction counts are exact, so the noise
# of a shared machine cannot fail (or pass) it. perf-gate-update records
# the counts of this checkout: commit the file with the change and say why.
BENCH_BIN := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release
perf-gate: deps
	$(CARGO) build -q --profile bench -p oneloop-bench --bin bench_icount --bin bench_echo_server
	$(BENCH_BIN)/bench_icount gate

perf-gate-update: deps
	$(CARGO) build -q --profile bench -p oneloop-bench --bin bench_icount --bin bench_echo_server
	$(BENCH_BIN)/bench_icount gate --update

# Every instruction-count case, the iteration table (N idle fds and timers)
# included, as one markdown table (about 10 minutes: glib's 1e4-fd cell).
bench-icount: deps
	$(CARGO) build -q --profile bench -p oneloop-bench --bin bench_icount --bin bench_echo_server
	$(BENCH_BIN)/bench_icount run --all

# The echo matrix of docs/benchmarks.md from a clean clone: the bare-epoll
# floor, oneloop's protocol and streams echo on every loop, every host's
# own echo, uvloop's and CPython's asyncio protocol echo (uvloop and
# matplotlib from PyPI into target/bench-venv), timed in interleaved rounds
# and counted under callgrind; writes target/bench-echo/echo.md, echo.json
# and echo.png. ECHO_ARGS passes options (e.g. ECHO_ARGS="--rounds 0" for
# the instruction counts alone).
BENCH_VENV := $(CURDIR)/target/bench-venv
ECHO_OUT := $(CURDIR)/target/bench-echo
ECHO_ARGS ?=
bench-echo: deps
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r bench/python/requirements.txt
	$(CARGO) build -q --profile bench -p oneloop-bench --bins
	$(BENCH_BIN)/bench_echo_matrix --python $(BENCH_VENV)/bin/python --instructions \
		--out $(ECHO_OUT) $(ECHO_ARGS)
	$(BENCH_VENV)/bin/python bench/python/plot.py $(ECHO_OUT)/echo.json $(ECHO_OUT)/echo.png

# The 10 000-connection cell of docs/benchmarks.md (issue 17 item 5):
# connect time and server CPU for 10 000 concurrent loopback connections x
# 16 KiB echo, on the default loop and every adapter, 5 interleaved rounds
# (about 1 minute). Both processes raise their soft RLIMIT_NOFILE to the
# hard limit, which must allow about 10 100 fds. C10K_ARGS passes options.
C10K_ARGS ?=
bench-10k: deps
	$(CARGO) build -q --profile bench -p oneloop-bench --bin bench_echo_10k --bin bench_echo_server
	$(BENCH_BIN)/bench_echo_10k $(C10K_ARGS)

# The Python package (python/, its own cargo workspace): build the abi3 wheel
# with maturin into python/.venv (PyPI and crates.io only; Debian -dev
# packages for PyGObject's build), install it with the test requirements
# (aiohttp, websockets, PyGObject), and run CPython's asyncio loop suites,
# real programs and our own tests on every host.
PYTHON ?= python3
PY_VENV := $(CURDIR)/python/.venv

.PHONY: python-test
python-test:
	@python/system-deps.sh
	@test -x $(PY_VENV)/bin/python || $(PYTHON) -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install -q 'maturin>=1.7,<2' -r python/tests/requirements.txt
	cd python && PYO3_PYTHON=$(PY_VENV)/bin/python CARGO_TARGET_DIR=$(CURDIR)/python/target \
		$(CARGO) test -j2
	cd python && VIRTUAL_ENV=$(PY_VENV) CARGO_TARGET_DIR=$(CURDIR)/python/target \
		$(PY_VENV)/bin/maturin build -j2 --out $(CURDIR)/python/target/wheels
	$(PY_VENV)/bin/pip install -q --force-reinstall --no-deps $(CURDIR)/python/target/wheels/oneloop-*.whl
	cd python/tests && $(PY_VENV)/bin/python run.py
	@# Again in asyncio's debug mode (-X dev) with CPython's debug allocator,
	@# which catches use-after-free of Python objects held from Rust.
	cd python/tests && PYTHONMALLOC=debug $(PY_VENV)/bin/python -X dev run.py
