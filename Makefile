# pgrecycle: build, test and demo entry points (CI runs `make test`).

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
# Go sources outside VCS metadata and vendored code.
GOFILES    = find . -name '*.go' -not -path './.git/*' -not -path './vendor/*' -print0

.PHONY: all build test unit fuzz benchcheck lint fmtcheck vet crossbuild demo bench clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/pgrecycle ./cmd/pgrecycle

# Cheap checks first, so a formatting slip fails in seconds; the steps run
# in this order even under make -j.
test: lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory benchcheck

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

# Every fuzz target in the tree gets a short run; new ones are found
# automatically. `go test -fuzz` accepts one package and one target at a time.
fuzz:
	@set -e; tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; \
	files=$$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=vendor --exclude-dir=testdata '^func Fuzz' . || true); \
	if [ -z "$$files" ]; then echo "fuzz: no Fuzz functions in the tree"; exit 0; fi; \
	for f in $$files; do \
		dir=$$(dirname "$$f"); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "fuzz: $$dir $$fn ($(FUZZTIME))"; \
			seen=$$(ls "$$dir/testdata/fuzz/$$fn" 2>/dev/null | wc -l); \
			if ! $(GO) test -run='^$$' -fuzz='^'"$$fn"'$$' -fuzztime=$(FUZZTIME) "./$$dir" > "$$tmp" 2>&1; then \
				cat "$$tmp"; \
				now=$$(ls "$$dir/testdata/fuzz/$$fn" 2>/dev/null | wc -l); \
				if [ "$$now" = "$$seen" ] && grep -q 'context deadline exceeded' "$$tmp" && ! grep -q 'Failing input' "$$tmp"; then \
					echo "fuzz: $$fn: the fuzzing engine ran out its own -fuzztime deadline; no failing input was found, so this is not a failure"; \
				else \
					exit 1; \
				fi; \
			else \
				tail -n 2 "$$tmp"; \
			fi; \
		done; \
	done

# Runs each benchmark once: proves they compile and do not crash.
benchcheck:
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

lint: fmtcheck vet crossbuild

# The binary must keep building off Linux (raw socket I/O, parking and
# SO_REUSEPORT have per-platform files); the tests and benchmarks are Linux-only.
crossbuild:
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/pgrecycle
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/pgrecycle

fmtcheck:
	@files=$$($(GOFILES) | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

demo:
	bash scripts/demo.sh

# Side-by-side benchmark against PgBouncer (not a test; CI never runs it).
# ~15 min, writes BENCHMARKS.md; `make bench BENCH_QUICK=1` takes ~2 min.
# Knobs: BENCH_TIME, BENCH_RUNS, BENCH_IDLE, BENCH_MANY, BENCH_ALLCPUS, BENCH_SCENARIOS.
bench:
	$(GO) run ./test/bench

clean:
	rm -rf bin

# Many-schema benchmark of issue 3 (not a test; CI never runs it): 500
# schemas × 10 tables through PgBouncer, pgrecycle without recycling and
# pgrecycle with max_memory; ~5 min, writes docs/recipes/many-schemas.md
# and its section of BENCHMARKS.md. `make bench-manyschema QUICK=1`: 15 s runs, no docs.
.PHONY: bench-manyschema
bench-manyschema:
	$(GO) run ./test/bench/manyschema $(if $(QUICK),-quick) $(if $(ZIPF),-zipf $(ZIPF))

# Recipes of docs/recipes/ (not tests; CI never runs them). Each starts its
# own PostgreSQL, builds pgrecycle and prints its table; ~1–2 min each.
.PHONY: recipe-partitioned-prepared recipe-connection-per-request recipe-oom-ride-through
recipe-partitioned-prepared:
	$(GO) run ./test/bench/recipes/partitioned-prepared

recipe-connection-per-request:
	$(GO) run ./test/bench/recipes/connection-per-request

recipe-oom-ride-through:
	$(GO) run ./test/bench/recipes/oom-ride-through
