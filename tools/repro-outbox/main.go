// Command repro-outbox reproduces, against a real daprd and Redis, two
// defects of Dapr's transactional outbox (pkg/runtime/pubsub/outbox.go,
// dapr 1.16.5 and 1.18.0) on the Redis state store:
//
//  1. A phantom: a state transaction that failed still publishes its event.
//     The outbox publishes each upsert to an internal topic and adds a marker
//     key, outbox-<uuid>, to the transaction before it runs; the Redis state
//     store's Multi (components-contrib state/redis/redis.go) runs the
//     operations in MULTI/EXEC, which has no rollback: an operation that
//     fails its ETag check fails alone, the marker is written, daprd answers
//     the app with an error, and the outbox publishes the refused value.
//  2. A stuck handler: an internal message whose marker never appears (its
//     transaction failed after the internal publish: daprd killed, Redis
//     down) is never rejected nor discarded. The handler's retry is an
//     ExponentialBackOff literal without Stop: backoff.Stop, so after its
//     10 s MaxElapsedTime NextBackOff returns 0 instead of Stop and it looks
//     for the marker forever, without pause. The entry stays pending; every
//     redelivery (each processingTimeout) starts one more such loop; daprd
//     can no longer shut down in time; outboxDiscardWhenMissingState never
//     takes effect.
//
// It uses no code of this project but tools/reprokit: redis-server, one
// daprd (app id "repro", no app) with state.redis (outbox to topic
// "orders" of pubsub.redis). For 1 it upserts key k = {"n":1} (the event
// comes, as it should), then upserts k = {"n":2} with a wrong ETag: daprd
// answers an error, k keeps {"n":1}, and it watches stream "orders". For 2
// it adds to the outbox's internal stream the message a failed transaction
// leaves (its marker never written) and watches the entry and Redis's
// command count for 20 s. It exits 1 when either is reproduced.
//
// Needs redis-server, redis-cli and daprd (DAPRD=/path/to/daprd, or daprd
// on PATH, or the build `make daprd` caches under ~/.cache/dapr-pub-sub).
// Run:
//
//	go run ./tools/repro-outbox
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"dapr-pub-sub/tools/reprokit"
)

func main() { reprokit.Main(run) }

const components = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - {name: redisHost, value: "127.0.0.1:%[1]d"}
    - {name: outboxPublishPubsub, value: pubsub}
    - {name: outboxPublishTopic, value: orders}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - {name: redisHost, value: "127.0.0.1:%[1]d"}
`

func run() error {
	sc, cli, cleanup, err := start()
	if err != nil {
		return err
	}
	defer cleanup()
	var found []string
	if msg, err := phantom(sc, cli); err != nil {
		return err
	} else if msg != "" {
		found = append(found, msg)
	}
	if msg, err := stuck(sc, cli); err != nil {
		return err
	} else if msg != "" {
		found = append(found, msg)
	}
	if len(found) > 0 {
		return errors.New("defects reproduced:\n  " + strings.Join(found, "\n  "))
	}
	return nil
}

// start starts redis-server and daprd with the outbox's components; cleanup
// stops them.
func start() (sc *reprokit.Sidecar, cli func(args ...string) (string, error), cleanup func(), err error) {
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return nil, nil, nil, err
	}
	dir, err := os.MkdirTemp("", "repro-outbox-")
	if err != nil {
		return nil, nil, nil, err
	}
	var stops []func()
	cleanup = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	stops = append(stops, func() { os.RemoveAll(dir) })
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	ports, err := reprokit.FreePorts(1)
	if err != nil {
		return nil, nil, nil, err
	}
	redis, err := reprokit.StartRedis(dir, ports[0])
	if err != nil {
		return nil, nil, nil, err
	}
	stops = append(stops, func() { reprokit.Stop(redis) })
	cli = reprokit.RedisCLI(ports[0])
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(resources, "components.yaml"), fmt.Appendf(nil, components, ports[0]), 0o644); err != nil {
		return nil, nil, nil, err
	}
	if sc, err = reprokit.StartSidecar(daprd, dir, "repro", resources); err != nil {
		return nil, nil, nil, err
	}
	stops = append(stops, func() { reprokit.Stop(sc.Cmd) })
	fmt.Printf("%s, redis-server on %d\n", sc.Version, ports[0])
	return sc, cli, cleanup, nil
}

// phantom is defect 1: a message when reproduced, "" when not.
func phantom(sc *reprokit.Sidecar, cli func(args ...string) (string, error)) (string, error) {

	// Each transaction upserts k, and sends the event as the docs show: a
	// projection of k (metadata outbox.projection) with content type JSON.
	// (Without the projection the outbox publishes a JSON value sent over
	// HTTP as Go's %v text, "map[n:1]", as text/plain; a contentType on the
	// stored operation makes the Redis store use JSON.SET, which plain
	// Redis lacks.)
	transact := func(value, etag string) (int, string, error) {
		write := `{"key":"k","value":` + value
		if etag != "" {
			write += `,"etag":"` + etag + `"`
		}
		projection := `{"key":"k","value":` + value + `,"metadata":{"outbox.projection":"true","contentType":"application/json"}}`
		body := `{"operations":[{"operation":"upsert","request":` + write + `}},{"operation":"upsert","request":` + projection + `}]}`
		resp, err := http.Post(sc.URL+"/v1.0/state/statestore/transaction", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	published := func(value string) bool {
		out, _ := cli("XRANGE", "orders", "-", "+")
		return strings.Contains(out, value)
	}

	// 1. A transaction that succeeds: its event comes.
	start := time.Now()
	code, body, err := transact(`{"n":1}`, "")
	if err != nil {
		return "", fmt.Errorf("the first transaction: %w", err)
	}
	if code != http.StatusNoContent {
		return "", fmt.Errorf("the first transaction: %d %s", code, body)
	}
	if err := reprokit.WaitFor(15*time.Second, func() bool { return published(`"n":1`) }); err != nil {
		out, _ := cli("XRANGE", "orders", "-", "+")
		fmt.Printf("stream orders:\n%s", out)
		return "", fmt.Errorf("the first transaction's event never came (daprd log: %s): %w", sc.Log, err)
	}
	fmt.Printf("1. upsert k={\"n\":1}: 204, its event on stream orders after %s\n", time.Since(start).Round(10*time.Millisecond))
	version, _ := cli("HGET", "repro||k", "version")
	etag := strings.TrimSpace(version)

	// 2. A transaction whose only write fails its ETag check.
	wrong := strconv.Itoa(mustAtoi(etag) + 100)
	code, body, err = transact(`{"n":2}`, wrong)
	if err != nil {
		return "", err
	}
	stored, _ := cli("HGET", "repro||k", "data")
	fmt.Printf("2. upsert k={\"n\":2} with ETag %s (k is at version %s): %d %s; k holds %s", wrong, etag, code, body, stored)
	if code < 400 {
		return "", errors.New("daprd accepted a write with a wrong ETag: cannot show the outbox defect")
	}
	if err := reprokit.WaitFor(10*time.Second, func() bool { return published(`"n":2`) }); err != nil {
		fmt.Println("   no event for {\"n\":2} within 10 s: not reproduced")
		return "", nil
	}
	out, _ := cli("XRANGE", "orders", "-", "+")
	fmt.Printf("   yet its event was published to stream orders:\n%s", out)
	return `1. the outbox published {"n":2}, whose transaction daprd refused and Redis never stored`, nil
}

// stuck is defect 2: a message when reproduced, "" when not.
func stuck(sc *reprokit.Sidecar, cli func(args ...string) (string, error)) (string, error) {
	// The internal topic is <namespace><app id><topic>outbox; outside
	// Kubernetes the namespace is "default". Its group is the app id.
	const stream = "defaultreproordersoutbox"
	groups, _ := cli("XINFO", "GROUPS", stream)
	if !strings.Contains(groups, "repro") {
		return "", fmt.Errorf("daprd does not read the outbox's internal stream %s (groups: %q)", stream, groups)
	}
	// What PublishInternal writes for a transaction, whose marker the
	// failed transaction never wrote.
	ce := `{"id":"outbox-00000000-0000-4000-8000-000000000000","source":"repro","type":"com.dapr.event.sent","specversion":"1.0",` +
		`"datacontenttype":"application/json","data":{"n":3},"pubsubname":"pubsub","topic":"","traceid":"","traceparent":"","tracestate":""}`
	id, err := cli("XADD", stream, "*", "data", ce)
	if err != nil {
		return "", err
	}
	id = strings.TrimSpace(id)
	calls := func() int { // commands Redis has run so far
		out, _ := cli("INFO", "stats")
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
				return mustAtoi(v)
			}
		}
		return 0
	}
	// The handler gives up after 10 s (MaxElapsedTime), rejecting the
	// message "for later processing": then it logs an error and the
	// component acknowledges (contrib ≥ 1.17) or redelivers it. 20 s is
	// twice that.
	time.Sleep(2 * time.Second) // the handler's own 1 s wait, and its first lookups
	before, t0 := calls(), time.Now()
	time.Sleep(18 * time.Second) // watching the handler is the point
	rate := float64(calls()-before) / time.Since(t0).Seconds()
	pending, _ := cli("XPENDING", stream, "repro")
	log, _ := os.ReadFile(sc.Log)
	gaveUp := strings.Contains(string(log), "failed to publish outbox topic")
	fmt.Printf("3. an internal message whose marker was never written (%s): after 20 s the handler gave up: %v; Redis runs %.0f commands/s; XPENDING: %s\n",
		id, gaveUp, rate, strings.Join(strings.Fields(pending), " "))
	if !gaveUp && rate > 100 {
		return fmt.Sprintf("2. the outbox's handler never gives up on a missing marker: no error after 20 s, Redis running %.0f commands/s for it, the entry still pending", rate), nil
	}
	return "", nil
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
