# fastly-exporter: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_API ?= 127.0.0.1:8081
DEMO_LISTEN ?= 127.0.0.1:8080
DEMO_SERVICES ?= 5

.PHONY: all build release test lint demo bench soak static clean docs

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release --bins

## Everything CI runs: formatting, lints, unit and end-to-end tests.
test:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --release --bins
	$(CARGO) test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## Runs the exporter against the bundled fake Fastly API (no token needed).
demo: release
	@scripts/demo.sh "$(DEMO_API)" "$(DEMO_LISTEN)" "$(DEMO_SERVICES)"

clean:
	$(CARGO) clean
