package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/launcher"
	"dapr-pub-sub/internal/order"
)

// Shared by every test: found or built once in TestMain.
var (
	root   string
	daprd  launcher.Daprd
	binDir string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if err := setup(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e setup:", err)
			return 1
		}
		defer os.RemoveAll(binDir)
		return m.Run()
	}())
}

func setup() error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("the integration tests need redis-server on PATH: apt-get install -y redis-server (.ci/run does this)")
	}
	var err error
	if root, err = launcher.RepoRoot(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if daprd, err = launcher.FindDaprd(ctx, root, os.Stderr); err != nil {
		return err
	}
	if binDir, err = os.MkdirTemp("", "dapr-pub-sub-e2e-bin-"); err != nil {
		return err
	}
	return launcher.BuildApps(ctx, root, binDir)
}

// system is the whole system on real processes, on free ports, for one test.
type system struct {
	t         testing.TB
	secrets   launcher.Secrets
	broker    *launcher.Broker
	redis     *redis.Client
	resources string
	sub       *launcher.Process
	subPort   int
	subDaprd  *launcher.RunningSidecar
	pubDaprd  *launcher.RunningSidecar
	received  *receipts
}

// options vary a system from the one `make run` starts.
type options struct {
	subEnv []string // more environment for the subscriber, e.g. fault settings
	broker string   // behind the pubsub component; default launcher.BrokerRedis
	mode   launcher.Mode
}

// startSystem starts redis-server, the subscriber and its daprd, and the
// publisher's daprd; t.Cleanup stops them in reverse order.
func startSystem(t testing.TB, opts ...options) *system {
	t.Helper()
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := t.Context()
	out := &testLog{t: t}
	s := &system{t: t, received: newReceipts(), secrets: launcher.NewSecrets(func(string) string { return "" })}
	ports, err := launcher.FreePorts(3) // redis, subscriber app, its sidecar's gRPC
	if err != nil {
		t.Fatal(err)
	}
	port := ports[0]
	s.broker, err = launcher.StartBroker(ctx, launcher.BrokerOptions{
		Mode: launcher.ModeServer, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir(), Out: out,
		Password: s.secrets.RedisPassword,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.broker.Stop)
	s.redis = redis.NewClient(&redis.Options{Addr: s.broker.Addr, Password: s.broker.Password})
	t.Cleanup(func() { s.redis.Close() })

	s.resources = t.TempDir()
	if err := launcher.CopyComponents(filepath.Join(root, "components"), s.resources, s.broker.Addr); err != nil {
		t.Fatal(err)
	}
	// Another broker behind "pubsub": started before the sidecars, so that
	// it is stopped after them.
	mb, err := launcher.StartMessageBroker(ctx, root, o.broker, out)
	if err != nil {
		t.Fatal(err)
	}
	if mb != nil {
		t.Cleanup(mb.Stop)
		if err := launcher.UseBroker(root, s.resources, mb); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.mode.Apply(s.resources, o.broker); err != nil {
		t.Fatal(err)
	}
	subEnv := append(o.mode.SubscriberEnv(), o.subEnv...)
	first := s.startSubscriber(launcher.SubscriberID, "", subEnv, s.received, ports[1], ports[2])
	s.sub, s.subDaprd, s.subPort = first.app, first.daprd, first.port
	s.pubDaprd, err = launcher.StartSidecar(ctx, daprd, launcher.Sidecar{
		Secrets: s.secrets, Config: daprConfig(), AppID: launcher.PublisherID, Resources: s.resources,
	}, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.pubDaprd.Stop(10 * time.Second) })
	return s
}

func daprConfig() string { return filepath.Join(root, "config", "config.yaml") }

// node is one subscriber app with its sidecar.
type node struct {
	app      *launcher.Process
	daprd    *launcher.RunningSidecar
	port     int
	received *receipts
}

// startSubscriber starts a subscriber app with app id appID (a replica of
// another when the id is the same) and its sidecar, on the given ports
// (free ones when 0); name tells replicas apart in the logs.
func (s *system) startSubscriber(appID, name string, env []string, rec *receipts, appPort, grpcPort int) *node {
	t := s.t
	t.Helper()
	if appPort == 0 || grpcPort == 0 {
		ports, err := launcher.FreePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		appPort, grpcPort = ports[0], ports[1]
	}
	if name == "" {
		name = appID
	}
	out := &testLog{t: t}
	n := &node{port: appPort, received: rec}
	var err error
	// E2E_DEBUG=1 turns on debug logs in the subscriber and its daprd,
	// E2E_DEBUG=app in the subscriber only, for chasing a failure (the logs
	// are shown when a test fails).
	logLevel := ""
	switch os.Getenv("E2E_DEBUG") {
	case "":
	case "app":
		env = append(env, "LOG_LEVEL=debug")
	default:
		logLevel, env = "debug", append(env, "LOG_LEVEL=debug")
	}
	n.app, err = launcher.StartSubscriberApp(t.Context(), launcher.SubscriberApp{
		Name: name, AppID: appID, Secrets: s.secrets, BinDir: binDir, Port: appPort, SidecarGRPC: grpcPort, Env: env, Out: out, OnLine: rec.observe,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.app.Stop(10 * time.Second) })
	n.daprd, err = launcher.StartSidecar(t.Context(), daprd, launcher.Sidecar{
		Name: "daprd-" + name, Secrets: s.secrets, Config: daprConfig(), AppID: appID, AppPort: appPort, GRPCPort: grpcPort, Resources: s.resources,
		LogLevel: logLevel,
	}, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.daprd.Stop(10 * time.Second) })
	return n
}

// publishHTTP publishes body to topic on component through the publisher's
// sidecar over plain HTTP, as curl would, with the Dapr API token.
func (s *system) publishHTTP(component, topic, contentType, body string) (int, string) {
	return daprPost(s.t, s.pubDaprd.HTTPURL()+"/v1.0/publish/"+component+"/"+topic, s.secrets.APIToken, contentType, body)
}

// daprPost POSTs body to url with token as the dapr-api-token ("" for none).
func daprPost(t testing.TB, url, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("dapr-api-token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// publish runs the publisher binary with args to completion.
func (s *system) publish(args ...string) {
	s.t.Helper()
	p, err := launcher.StartPublisherApp(binDir, s.pubDaprd, args, nil, &testLog{t: s.t})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		p.Stop(time.Second)
		s.t.Fatalf("publisher %v: %v\n%s", args, err, p.Tail())
	}
}

// processes is every process the system started.
func (s *system) processes() []*launcher.Process {
	return []*launcher.Process{s.broker.Process(), s.sub, s.subDaprd.Process, s.pubDaprd.Process}
}

// waitDrained polls until the subscriber has printed want distinct orders
// and the consumer group has nothing pending, so no redelivery can follow.
func (s *system) waitDrained(want int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.received.distinct()
		pending := int64(-1)
		if got >= want {
			if p, err := s.redis.XPending(s.t.Context(), "orders", launcher.SubscriberID).Result(); err == nil {
				pending = p.Count
			}
			if pending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("not drained after %s: %d of %d orders received, %d pending", timeout, got, want, pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receipts collects the subscriber's "Received message" lines.
type receipts struct {
	mu     sync.Mutex
	counts map[int64]int
	orders map[int64]order.Order
	lines  []string // every output line, for assertions on logs
	bad    []string // Received lines that did not decode
}

func newReceipts() *receipts {
	return &receipts{counts: map[int64]int{}, orders: map[int64]order.Order{}}
}

const receivedPrefix = "Received message: "

func (r *receipts) observe(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	rest, ok := strings.CutPrefix(line, receivedPrefix)
	if !ok {
		return
	}
	o, err := order.Decode([]byte(rest))
	if err != nil {
		r.bad = append(r.bad, line)
		return
	}
	r.counts[o.ID]++
	r.orders[o.ID] = o
}

func (r *receipts) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.counts)
}

// snapshot returns copies of the counts and orders received so far.
func (r *receipts) snapshot() (map[int64]int, map[int64]order.Order, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts, orders := map[int64]int{}, map[int64]order.Order{}
	for k, v := range r.counts {
		counts[k] = v
	}
	for k, v := range r.orders {
		orders[k] = v
	}
	return counts, orders, append([]string(nil), r.bad...)
}

func (r *receipts) logLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// testLog sends process output to t.Log, shown with -v or on failure.
type testLog struct{ t testing.TB }

func (w *testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
