// Command repro-outbox-etag reproduces, against a real daprd and Redis,
// Dapr's transactional outbox publishing an event for a state transaction
// that failed: a "phantom" event for data that was never stored.
//
// Dapr's outbox (pkg/runtime/pubsub/outbox.go, dapr 1.16.5 and 1.18.0)
// publishes each upsert of a transaction to an internal topic and adds a
// marker key, outbox-<uuid>, to the transaction, before it runs; the
// internal subscriber publishes the event once it finds the marker. The
// Redis state store's Multi (components-contrib state/redis/redis.go, 1.16.5
// and 1.18.0) runs the operations in MULTI/EXEC, which has no rollback: an
// operation that fails its ETag check fails alone, the marker is written,
// and daprd answers the app with an error although the outbox goes on and
// publishes the refused value.
//
// It uses no code of this project but tools/reprokit: redis-server, one
// daprd (app id "repro", no app) with state.redis (outbox to topic
// "orders" of pubsub.redis). It upserts key k = {"n":1} (the event comes,
// as it should), then upserts k = {"n":2} with a wrong ETag: daprd answers
// an error and k keeps {"n":1}, and it watches stream "orders" for 10 s.
// It exits 1 when {"n":2} is published: the defect reproduced.
//
// Needs redis-server, redis-cli and daprd (DAPRD=/path/to/daprd, or daprd
// on PATH, or the build `make daprd` caches under ~/.cache/dapr-pub-sub).
// Run:
//
//	go run ./tools/repro-outbox-etag
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
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repro-outbox-etag-")
	if err != nil {
		return err
	}
	defer func() {
		if os.Getenv("KEEP") == "" {
			os.RemoveAll(dir)
		}
	}()
	ports, err := reprokit.FreePorts(1)
	if err != nil {
		return err
	}
	redis, err := reprokit.StartRedis(dir, ports[0])
	if err != nil {
		return err
	}
	defer reprokit.Stop(redis)
	cli := reprokit.RedisCLI(ports[0])
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(resources, "components.yaml"), fmt.Appendf(nil, components, ports[0]), 0o644); err != nil {
		return err
	}
	sc, err := reprokit.StartSidecar(daprd, dir, "repro", resources)
	if err != nil {
		return err
	}
	defer reprokit.Stop(sc.Cmd)
	fmt.Printf("%s, redis-server on %d\n", sc.Version, ports[0])

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
	if err != nil || code != http.StatusNoContent {
		return fmt.Errorf("the first transaction: %d %s %v", code, body, err)
	}
	if err := reprokit.WaitFor(15*time.Second, func() bool { return published(`"n":1`) }); err != nil {
		out, _ := cli("XRANGE", "orders", "-", "+")
		fmt.Printf("stream orders:\n%s", out)
		return fmt.Errorf("the first transaction's event never came (daprd log: %s): %w", sc.Log, err)
	}
	fmt.Printf("1. upsert k={\"n\":1}: 204, its event on stream orders after %s\n", time.Since(start).Round(10*time.Millisecond))
	version, _ := cli("HGET", "repro||k", "version")
	etag := strings.TrimSpace(version)

	// 2. A transaction whose only write fails its ETag check.
	wrong := strconv.Itoa(mustAtoi(etag) + 100)
	code, body, err = transact(`{"n":2}`, wrong)
	if err != nil {
		return err
	}
	stored, _ := cli("HGET", "repro||k", "data")
	fmt.Printf("2. upsert k={\"n\":2} with ETag %s (k is at version %s): %d %s; k holds %s", wrong, etag, code, body, stored)
	if code < 400 {
		return errors.New("daprd accepted a write with a wrong ETag: cannot show the outbox defect")
	}
	if err := reprokit.WaitFor(10*time.Second, func() bool { return published(`"n":2`) }); err != nil {
		fmt.Println("   no event for {\"n\":2} within 10 s: not reproduced")
		return nil
	}
	out, _ := cli("XRANGE", "orders", "-", "+")
	fmt.Printf("   yet its event was published to stream orders:\n%s", out)
	return errors.New(`defect reproduced: the outbox published {"n":2}, whose transaction daprd refused and Redis never stored`)
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
