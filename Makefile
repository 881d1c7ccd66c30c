# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
.PHONY: demo test bench fuzz deps build fmt lint image

CARGO ?= cargo

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked --workspace

demo: build
	@scripts/demo.sh

test:
	@scripts/deps.sh --test
	@scripts/test.sh

image: build
	@scripts/image.sh

fuzz:
	@scripts/deps.sh --test
	@scripts/fuzz.sh

bench: build
	@scripts/bench.sh
	@scripts/bench-api.sh
	@scripts/bench-webhook.sh
	@scripts/bench-backtest.sh
	@scripts/bench-soak.sh
	@scripts/bench-faults.sh
	@scripts/bench-retention.sh

fmt:
	$(CARGO) fmt --all
