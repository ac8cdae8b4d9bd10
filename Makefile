# sesrelay: `make run` runs the relay on the embedded development
# configuration; `make test` installs what the tests need (idempotent) and
# runs every test: vet, unit and integration tests with the race detector,
# the end-to-end suite with third-party clients, and the deployment checks.

GO ?= go

.PHONY: run build test deps unit policy-test e2e deploy-check fuzz fuzz-short bench

run:
	$(GO) run ./cmd/sesrelay serve

# The same build as the container image (deploy/build.sh), so what is
# tested is what ships.
build:
	sh deploy/build.sh
	mkdir -p bin && mv sesrelay bin/sesrelay

deps:
	bash scripts/deps.sh

test: deps unit policy-test fuzz-short e2e deploy-check

# The example policy tests against the example configuration (docs/policy.md).
policy-test:
	$(GO) run ./cmd/sesrelay test --config examples/dev.yaml examples/tests/*.yaml

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

e2e:
	@if [ -x e2e/run.sh ]; then bash e2e/run.sh; else echo "e2e: no suite yet"; fi

deploy-check:
	bash .ci/deploy-check.sh

# Longer fuzz runs of every fuzz target: FUZZTIME=60s each unless set
# (a duration, or a count of executions such as 2000000x).
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} bash scripts/fuzz.sh

# What `make test` runs: 25,000 executions per target (a few seconds each)
# on top of the seeds that `go test` always runs. A count, not a duration:
# see scripts/fuzz.sh for the Go 1.26 duration race this avoids.
fuzz-short:
	FUZZTIME=25000x bash scripts/fuzz.sh

bench:
	$(GO) run ./bench run --relay-bin bin/sesrelay
