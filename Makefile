# Tandem — everyday commands. `make run` and `make test` are all a fresh
# machine needs (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
BIND ?= 127.0.0.1:3000

.PHONY: run build web test test-rust test-node test-web services bench bench-compare bench-dialects bench-web bench-sync bench-cluster soak fmt lint clean fuzz-smoke

## Build the web editor and the server (release), then start it on the embedded SQLite default.
run: build
	./target/release/tandem serve --bind $(BIND)

## The release binaries; the web editor (web/dist) is built first and embedded in `tandem`.
build: web
	$(CARGO) build --release --bins

## The web editor (web/dist): npm ci when the lockfile changed, vite build when a source did.
WEB_SOURCES := $(shell find web/src web/index.html web/vite.config.ts web/tsconfig.json web/package.json -type f 2>/dev/null)
web: web/dist/index.html

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npx vite build --logLevel warn

tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

## The whole suite: Rust unit + integration tests (SQLite and PostgreSQL), the Node
## end-to-end suite, then the web editor (type check, unit tests, Chromium tests).
## web/dist is built first: the Rust tests serve it as the built-in bundle.
test: web test-rust test-node test-web

services:
	@bash scripts/services.sh >/dev/null

test-rust:
	@eval "$$(bash scripts/services.sh)" && $(CARGO) test --all-targets

test-node: tests/node/node_modules/.package-lock.json
	$(CARGO) build --bins
	cd tests/node && npm test

## Web editor: tsc, vitest (provider against the real server, binding text ops),
## then the browser tests in Debian's Chromium (screenshots in web/e2e/artifacts/).
test-web: web tests/node/node_modules/.package-lock.json
	@bash scripts/ensure-chromium.sh
	$(CARGO) build --bins
	cd web && npx tsc --noEmit && npx vitest run && npm run test:browser

## Browser benchmark (not in `test`): keystroke-to-remote-render latency, page load, bundle size.
bench-web: web tests/node/node_modules/.package-lock.json
	@bash scripts/ensure-chromium.sh
	$(CARGO) build --release --bins
	cd web && TANDEM_BIN=../target/release/tandem node e2e/bench.js

## tandem sync: save-to-other-folder latency and initial sync of a 1,000-file tree (not in `test`).
bench-sync:
	$(CARGO) build --release --bins
	python3 scripts/bench_sync.py --files 1000 --saves 200

## Cluster mode: edit-to-peer latency on one node vs across two, and the CPU cluster mode costs (not in `test`).
bench-cluster:
	$(CARGO) build --release --bins
	@eval "$$(bash scripts/services.sh)" && python3 scripts/bench_cluster.py --sessions 10 --rate 50 --secs 20

## Criterion micro-benches (hot path vs bare yrs) and the persistence benchmarks.
bench:
	$(CARGO) bench --bench hot_path
	@eval "$$(bash scripts/services.sh)" && $(CARGO) bench --bench persistence

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

## Tandem vs the Node y-socket.io server, same workload, one run (see BENCHMARKS.md).
bench-compare:
	bash scripts/bench-compare.sh

## Tandem's three dialects vs the npm providers' reference servers, everyday and heavy load, one run.
bench-dialects:
	bash scripts/bench-dialects.sh

## Every cargo-fuzz target for FUZZ_SECS seconds each (not part of `test`; see docs/FUZZING.md).
FUZZ_SECS ?= 30
FUZZ_TARGETS := update_apply awareness_apply jwt_verify json_args
# A huge reservation that cannot be met fails as in production (try_reserve: Err);
# memory actually touched is still capped by -rss_limit_mb.
FUZZ_FLAGS ?= -rss_limit_mb=4096 -malloc_limit_mb=65536 -timeout=10
fuzz-smoke: export ASAN_OPTIONS = allocator_may_return_null=1
fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@rustup toolchain list | grep -q '^nightly' || { echo 'fuzz-smoke needs the nightly toolchain (rustup toolchain install nightly)'; exit 1; }
	cd fuzz && $(CARGO) +nightly fuzz build -O
	@set -e; cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t; \
		echo "== $$t ($(FUZZ_SECS) s)"; \
		$(CARGO) +nightly fuzz run -O $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECS) $(FUZZ_FLAGS) -print_final_stats=1; \
	done

## Soak, not in CI: SOAK_MINUTES (default 30) of tandem-load with clients leaving and
## returning, documents evicted and reloaded; RSS every 10 s, latency, convergence (see BENCHMARKS.md).
soak:
	bash scripts/soak.sh
