# dapr-pub-sub: the seed's Dapr pub/sub system in Go. `make help` lists targets.
SHELL := /bin/bash
GO    ?= go
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: outbox-broker-fault help run unit test bench lint chaos soak longrun brokers cluster deadletters daprd daprd-default prebuild-later build vet fmt clean k8s-up k8s-down k8s-run k8s-test

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## run the whole system: Redis, both sidecars, subscriber, publisher (Ctrl-C stops); BROKER=rabbitmq|mqtt|kafka|jetstream|rabbitmq-cluster, MODE=throughput, CHANNEL=http, OUTBOX=1, RECORDS=1, ORDERED=1, DAPR_VERSION=1.16.5
	@$(LAUNCHER_BUILD)
	@bin/launcher $(if $(BROKER),-broker $(BROKER)) $(if $(MODE),-mode $(MODE)) $(if $(CHANNEL),-channel $(CHANNEL)) $(if $(OUTBOX),-outbox) $(if $(RECORDS),-records) $(if $(ORDERED),-ordered) $(ARGS)

# Builds bin/launcher. The first time on a machine the go command fetches the
# launcher's modules (~2 min on 2 cores) and then compiles without a word:
# say so, and tick every 30 s while it lasts.
LAUNCHER_BUILD = test -x bin/launcher || echo "==> Building the launcher (the first time on this machine: its Go modules are fetched, about 2 minutes on 2 cores)"; \
	( t=0; while sleep 30; do t=$$((t+30)); echo "  … still building the launcher ($${t}s)"; done ) & ticker=$$!; \
	$(GO) build -o bin/ ./cmd/launcher; rc=$$?; kill $$ticker 2>/dev/null; exit $$rc

# The Dapr runtime versions: the default is tools/daprd/go.mod's; every
# tools/daprd/go.<version>.mod is another one the version matrix runs on.
OTHER_DAPR := $(patsubst tools/daprd/go.%.mod,%,$(wildcard tools/daprd/go.*.mod))
# What the matrix runs on the other versions: the flow, the fault suite (on the
# default channel), bad input, security.
MATRIX_TESTS := TestHundredOrders|TestLocalRunShowsTheSeedFlow|TestFaults|TestBadInput|TestInvalidOrder|TestDeadLettersReplay|TestTokensAreRequired|TestTopicScopes|TestOversizedPublish|TestEveryPortIsOnLoopback

# The packages of make unit: all but those that start the system or make
# network namespaces (their tests are integration tests, in make test).
UNIT_PKGS = $(shell $(GO) list ./... | grep -vE '/internal/harness/(e2e|cluster|hosts)$$')

unit: ## the unit tests of every package, -short: no daprd, no broker, no root (seconds once built; make test runs them all)
	$(GO) test -short -count=1 $(UNIT_PKGS)

test: daprd-default prebuild-later vet lint ## lint, unit and integration tests on real redis-server, daprd and Chromium; then the version matrix; then the in-cluster scenarios on Kubernetes (root)
	$(GO) test -count=1 -timeout 45m ./...
	@for v in $(OTHER_DAPR); do \
		echo "== Dapr runtime $$v: $(MATRIX_TESTS)"; \
		DAPR_VERSION=$$v CHAOS_CHANNEL=grpc $(GO) test -count=1 -timeout 20m -run '$(MATRIX_TESTS)' ./internal/harness/e2e || exit 1; \
	done
	@echo "== Kubernetes: deploy/ on a one-node cluster with Dapr's control plane, the in-cluster scenarios"
	$(GO) test -tags k8s -count=1 -timeout 40m -run TestInCluster ./internal/harness/k8s

bench: daprd ## benchmark vs raw Redis and Watermill (1.5–2 h; ARGS="-reps 1" a third); writes bench/results/{results.md,results.json,plot.svg}; ARGS=-h for flags
	$(GO) run ./cmd/bench $(ARGS)

lint: ## golangci-lint v2 with .golangci.yml (pinned; built on first use)
	$(GOLANGCI_LINT) run ./...

chaos: daprd ## the fault scenarios with 10,000 orders each, both modes, every channel (MODE=, CHANNEL= for fewer); prints the table (several minutes)
	CHAOS_ORDERS=$${CHAOS_ORDERS:-10000} CHAOS_REPORT=$(CURDIR)/chaos-report.txt CHAOS_MODE=$(MODE) CHAOS_CHANNEL=$(CHANNEL) \
		$(GO) test -count=1 -timeout 60m -run TestFaults ./internal/harness/e2e
	@cat chaos-report.txt

soak: daprd ## restart the subscriber app RESTARTS times (default 500) under a steady 400 orders/s, on CHANNEL (default grpc); prints lost/duplicates/drain
	SOAK_RESTARTS=$(RESTARTS) SOAK_CHANNEL=$(CHANNEL) SOAK_REPORT=$(CURDIR)/soak-report.md \
		$(GO) test -tags soak -count=1 -timeout 120m -run TestSoak -v ./internal/harness/e2e | grep -E '^\s*(---|ok|FAIL|\|)|soak_test'

longrun: daprd ## steady load for DURATION (default 10m; ORDERS= or RATE=, default 200/s) with a WINDOW (default 2m) retention window and faults sprinkled in; prints memory, stream length and records over time, plots them to longrun.svg
	set -o pipefail; LONGRUN_DURATION=$${DURATION:-10m} LONGRUN_WINDOW=$${WINDOW:-2m} LONGRUN_ORDERS=$(ORDERS) LONGRUN_RATE=$(RATE) \
		LONGRUN_REPORT=$(CURDIR)/longrun-report.md LONGRUN_PLOT=$(CURDIR)/longrun.svg \
		$(GO) test -count=1 -timeout 12h -run TestLongRun -v ./internal/harness/e2e | grep -E '^\s*(---|ok|FAIL|\|)|longrun_test|orders at'

cluster: daprd ## the cluster scenarios (a node killed, cut off, a rolling restart) on Redis with failover and on JetStream, three test hosts each, ORDERS each (default 10,000; make test runs them at 1,000; root: network namespaces); prints the table, writes cluster-report.md
	rm -f cluster-report.md; set -o pipefail; CLUSTER_ORDERS=$${ORDERS:-10000} CLUSTER_REPORT=$(CURDIR)/cluster-report.md \
		$(GO) test -count=1 -timeout 90m -run TestCluster -v ./internal/harness/e2e | grep -E '^\s*(---|ok|FAIL|\|)|cluster_test'

outbox-broker-fault: daprd ## the outbox with the broker (RabbitMQ) frozen 20 s while the store is up, 1,000 orders (not in make test: Dapr's RabbitMQ component loses some of those events; see docs/guarantees.md)
	set -o pipefail; OUTBOX_BROKER_FAULT=1 $(GO) test -count=1 -timeout 20m -run 'TestOutbox/the_broker_.RabbitMQ' -v ./internal/harness/e2e | grep -E '^\s*(---|ok|FAIL)|outbox_test'

brokers: daprd ## the broker portability suite with 5,000 orders per broker (BROKER=... for one)
	set -o pipefail; BROKER_ORDERS=$${BROKER_ORDERS:-5000} $(GO) test -count=1 -timeout 60m -run TestBrokers -v ./internal/harness/e2e | grep -E '^\s*(---|ok|FAIL)|brokers_test'

k8s-up: daprd ## a one-node Kubernetes (tools/k8s's version) with CoreDNS and Dapr's control plane on this machine, in network namespace dps-k8s (root; builds it once, minutes)
	$(GO) run ./cmd/k8s up

k8s-run: daprd ## deploy/ applied as the README says on that cluster (up if it is not), then the subscriber's Received message lines from its pod
	$(GO) run ./cmd/k8s run

k8s-test: daprd ## the in-cluster scenarios on a cluster of their own (app container killed, pod deleted, scaled 1→3→1, rollout restart, Redis pod deleted; K8S_ORDERS each, default 1,000); prints the table
	set -o pipefail; $(GO) test -tags k8s -count=1 -timeout 40m -run TestInCluster -v ./internal/harness/k8s | grep -E '^\s*(---|ok|FAIL|\|)|scenarios_test'

k8s-down: ## stop the cluster and put back everything it changed
	$(GO) run ./cmd/k8s down

deadletters: ## list the subscriber's dead letters during `make run` (ARGS=replay to replay them)
	@test -f .run/dapr-api-token -a -f .run/publisher-grpc-port || { echo "make deadletters talks to the publisher's sidecar of a running \`make run\` in this checkout, and none is running (no .run/dapr-api-token): start it first" >&2; exit 1; }
	@DAPR_API_TOKEN="$$(cat .run/dapr-api-token)" DAPR_GRPC_PORT="$$(cat .run/publisher-grpc-port)" $(GO) run ./cmd/deadletters $${ARGS:-list}

daprd: daprd-default ## find daprd of every runtime version, or build it once from the Dapr Go module (minutes the first time)
	@for v in $(OTHER_DAPR); do bin/launcher -prepare -dapr-version $$v || exit 1; done

daprd-default:
	@$(LAUNCHER_BUILD)
	@bin/launcher -prepare

# What only the later steps of make test need — daprd of the other runtimes
# (the version matrix) and the Kubernetes set (the last step) — is built in
# the background at the lowest CPU priority while lint and `go test ./...`
# run, in the CPU they leave idle: on a machine with empty caches that takes
# about 20 minutes off the run. A step that needs a build still under way
# waits for it (the build caches' lock, launcher.BuildOnce); one that failed
# there is tried again by the step, which then says why. On a warm machine
# both find their caches at once. Its output: .run/prebuild.log.
prebuild-later:
	@mkdir -p .run
	@nice -n 19 $(SHELL) -c 'for v in $(OTHER_DAPR); do bin/launcher -prepare -dapr-version $$v || exit 1; done; $(GO) run ./cmd/k8s build' \
		</dev/null >.run/prebuild.log 2>&1 &
	@echo "==> Building daprd $(OTHER_DAPR) and the Kubernetes set in the background at the lowest priority (.run/prebuild.log)"

build: ## build the commands into bin/
	$(GO) build -o bin/ ./cmd/...

vet: ## go vet, and fail on unformatted files
	$(GO) vet ./...
	$(GO) vet -tags soak ./internal/harness/e2e
	$(GO) vet -tags k8s ./internal/harness/k8s
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }

fmt: ## gofmt the tree
	gofmt -w .

clean: ## remove bin/ (the daprd cache in ~/.cache/dapr-pub-sub is kept)
	rm -rf bin/
