# Tandem — everyday commands. `make run` and `make test` are all a fresh
# machine needs (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
BIND ?= 127.0.0.1:3000

.PHONY: run build test test-rust test-node services bench bench-compare fmt lint clean

## Build the server (release) and start it on the embedded SQLite default.
run: build
	./target/release/tandem serve --bind $(BIND)

build:
	$(CARGO) build --release --bins

## The whole suite: Rust unit + integration tests (SQLite, PostgreSQL, Redis), then the Node end-to-end suite.
test: test-rust test-node

services:
	@bash scripts/services.sh >/dev/null

test-rust:
	@eval "$$(bash scripts/services.sh)" && $(CARGO) test --all-targets

test-node:
	$(CARGO) build --bins
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error && npm test

## Criterion micro-benches (hot path vs bare yrs).
bench:
	$(CARGO) bench --bench hot_path

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
