# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
.PHONY: demo test bench deps build fmt lint

CARGO ?= cargo

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

demo: build
	@scripts/demo.sh

test:
	@scripts/deps.sh --test
	@scripts/test.sh

bench: build
	@scripts/bench.sh
	@scripts/bench-api.sh
	@scripts/bench-backtest.sh
	@scripts/bench-retention.sh

fmt:
	$(CARGO) fmt --all
