// Command repro-outbox reproduces, against a real daprd and Redis, three
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
//  3. A lost event (daprd 1.18.0, not 1.16.5): a transaction committed
//     while the broker is down is never published. The handler's publish
//     fails and it returns the error to reject the message "for later
//     processing"; but since components-contrib 1.17 (#4208) the Redis
//     Streams component acknowledges a message whose handler failed, so
//     the internal message is gone, its marker stays forever, and the
//     committed state is never announced — the dual write the outbox is
//     there to prevent.
//
// It uses no code of this project but tools/reprokit: two redis-servers
// (the store's, with the outbox's internal topic on component "internal",
// and the broker's), one daprd (app id "repro", no app, no resiliency
// policy) with state.redis (outbox to topic "orders" of pubsub.redis on
// the broker's Redis). For 1 it upserts key k = {"n":1} (the event comes,
// as it should), then upserts k = {"n":2} with a wrong ETag: daprd answers
// an error, k keeps {"n":1}, and it watches stream "orders". For 2 it adds
// to the outbox's internal stream the message a failed transaction leaves
// (its marker never written) and watches the entry and Redis's command
// count for 20 s. For 3 it stops the broker's Redis, upserts k = {"n":4}
// (204), starts the broker's Redis again after 5 s and watches stream
// "orders" for 20 s (the internal component redelivers after 5 s). It
// exits 1 when any is reproduced.
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
    - {name: outboxPubsub, value: internal}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: internal
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - {name: redisHost, value: "127.0.0.1:%[1]d"}
    - {name: processingTimeout, value: "5000"}
    - {name: redeliverInterval, value: "1000"}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - {name: redisHost, value: "127.0.0.1:%[2]d"}
`

func run() error {
	e, cleanup, err := start()
	if err != nil {
		return err
	}
	defer cleanup()
	var found []string
	for _, check := range []func(*env) (string, error){phantom, stuck, lost} {
		msg, err := check(e)
		if err != nil {
			return err
		}
		if msg != "" {
			found = append(found, msg)
		}
	}
	if len(found) > 0 {
		return errors.New("defects reproduced:\n  " + strings.Join(found, "\n  "))
	}
	return nil
}

// env is what the checks use: the sidecar; redis-cli on the store's Redis
// (cli) and on the broker's (broker); and how to stop and start the
// broker's Redis.
type env struct {
	sc          *reprokit.Sidecar
	cli, broker func(args ...string) (string, error)
	stopBroker  func()
	startBroker func() error
}

// start starts the two redis-servers and daprd with the outbox's
// components; cleanup stops them.
func start() (e *env, cleanup func(), err error) {
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "repro-outbox-")
	if err != nil {
		return nil, nil, err
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
	ports, err := reprokit.FreePorts(2)
	if err != nil {
		return nil, nil, err
	}
	store, err := reprokit.StartRedis(dir, ports[0])
	if err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { reprokit.Stop(store) })
	broker, err := reprokit.StartRedis(dir, ports[1])
	if err != nil {
		return nil, nil, err
	}
	e = &env{cli: reprokit.RedisCLI(ports[0]), broker: reprokit.RedisCLI(ports[1])}
	e.stopBroker = func() {
		if broker != nil {
			reprokit.Stop(broker)
			broker = nil
		}
	}
	e.startBroker = func() (err error) {
		broker, err = reprokit.StartRedis(dir, ports[1])
		return err
	}
	stops = append(stops, e.stopBroker)
	resources := filepath.Join(dir, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(resources, "components.yaml"), fmt.Appendf(nil, components, ports[0], ports[1]), 0o644); err != nil {
		return nil, nil, err
	}
	if e.sc, err = reprokit.StartSidecar(daprd, dir, "repro", resources); err != nil {
		return nil, nil, err
	}
	stops = append(stops, func() { reprokit.Stop(e.sc.Cmd) })
	fmt.Printf("%s, the store's redis-server on %d, the broker's on %d\n", e.sc.Version, ports[0], ports[1])
	return e, cleanup, nil
}

// phantom is defect 1: a message when reproduced, "" when not.
func phantom(e *env) (string, error) {
	sc, cli := e.sc, e.cli

	transact := func(value, etag string) (int, string, error) { return transact(sc, value, etag) }
	published := func(value string) bool { return published(e, value) }

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
		out, _ := e.broker("XRANGE", "orders", "-", "+")
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
	out, _ := e.broker("XRANGE", "orders", "-", "+")
	fmt.Printf("   yet its event was published to stream orders:\n%s", out)
	return `1. the outbox published {"n":2}, whose transaction daprd refused and Redis never stored`, nil
}

// stuck is defect 2: a message when reproduced, "" when not.
func stuck(e *env) (string, error) {
	sc, cli := e.sc, e.cli
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
	// The handler gives up after 10 s (MaxElapsedTime), rejecting the
	// message "for later processing": then it logs an error and the
	// component acknowledges (contrib ≥ 1.17) or redelivers it. 20 s is
	// twice that. Until its context ends (the internal component's
	// processingTimeout, 5 s here) each lookup is a Redis GET; after, each
	// fails at once: the loop spins on daprd's CPU, not Redis's.
	time.Sleep(2 * time.Second) // the handler's own 1 s wait, and its first lookups
	before, t0 := cpuSeconds(sc.Cmd.Process.Pid), time.Now()
	time.Sleep(18 * time.Second) // watching the handler is the point
	cpu := (cpuSeconds(sc.Cmd.Process.Pid) - before) / time.Since(t0).Seconds()
	pending, _ := cli("XPENDING", stream, "repro")
	log, _ := os.ReadFile(sc.Log)
	gaveUp := strings.Contains(string(log), "failed to publish outbox topic")
	fmt.Printf("3. an internal message whose marker was never written (%s): after 20 s the handler gave up: %v; daprd, with no other work, uses %.0f %% of a core; XPENDING: %s\n",
		id, gaveUp, 100*cpu, strings.Join(strings.Fields(pending), " "))
	if !gaveUp && cpu > 0.5 {
		return fmt.Sprintf("2. the outbox's handler never gives up on a missing marker: no error after 20 s, daprd spinning at %.0f %% of a core for it, the entry still pending", 100*cpu), nil
	}
	return "", nil
}

// transact upserts k = value in one transaction with the event sent as
// the docs show: a projection of k (metadata outbox.projection) with
// content type JSON; etag "" for none. (Without the projection the outbox
// publishes a JSON value sent over HTTP as Go's %v text, "map[n:1]", as
// text/plain; a contentType on the stored operation makes the Redis store
// use JSON.SET, which plain Redis lacks.)
func transact(sc *reprokit.Sidecar, value, etag string) (int, string, error) {
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

// published reports whether an event carrying value is on the broker's
// stream "orders".
func published(e *env, value string) bool {
	out, _ := e.broker("XRANGE", "orders", "-", "+")
	return strings.Contains(out, value)
}

// lost is defect 3: a message when reproduced, "" when not.
func lost(e *env) (string, error) {
	e.stopBroker()
	code, body, err := transact(e.sc, `{"n":4}`, "")
	if err != nil {
		return "", err
	}
	if code != http.StatusNoContent {
		return "", fmt.Errorf("the transaction while the broker is down: %d %s (the store is up: it should commit)", code, body)
	}
	stored, _ := e.cli("HGET", "repro||k", "data")
	fmt.Printf("4. the broker's Redis stopped; upsert k={\"n\":4}: %d, k holds %s", code, stored)
	time.Sleep(5 * time.Second) // the outage is the point
	if err := e.startBroker(); err != nil {
		return "", err
	}
	if err := reprokit.WaitFor(20*time.Second, func() bool { return published(e, `"n":4`) }); err == nil {
		fmt.Println("   the broker's Redis started again after 5 s: the event came")
		return "", nil
	}
	pending, _ := e.cli("XPENDING", "defaultreproordersoutbox", "repro")
	markers, _ := e.cli("KEYS", "outbox-*")
	fmt.Printf("   the broker's Redis started again after 5 s; 20 s later no event for {\"n\":4}; the internal topic's XPENDING (the entry of 3 only): %s; its marker is still there: %s\n",
		strings.Join(strings.Fields(pending), " "), strings.Join(strings.Fields(markers), " "))
	return `3. the outbox never published {"n":4}, committed while the broker was down: its internal message was acknowledged after the failed publish`, nil
}

// cpuSeconds is the CPU time process pid has used (utime + stime from
// /proc/<pid>/stat, at the kernel's 100 ticks per second); 0 if unknown.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	return float64(mustAtoi(f[11])+mustAtoi(f[12])) / 100
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
