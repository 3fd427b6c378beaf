package e2e

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/harness/cluster"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// Shared by every test: found or built once in TestMain.
var (
	tools  system.Tools
	root   string // the repository root
	binDir string // the built apps
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		cleanup, err := setup()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e setup:", err)
			return 1
		}
		defer cleanup() // the built apps' folder
		return m.Run()
	}())
}

// setup finds or builds daprd of DAPR_VERSION (the default runtime when
// unset) and builds the apps, once for every test; cleanup removes them.
func setup() (cleanup func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("the integration tests need redis-server on PATH: apt-get install -y redis-server (.ci/run does this)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if tools, cleanup, err = system.Prepare(ctx, os.Getenv("DAPR_VERSION"), os.Stderr); err != nil {
		return nil, err
	}
	root, binDir = tools.Root, tools.BinDir
	fmt.Fprintf(os.Stderr, "e2e: daprd %s (%s)\n", tools.Daprd.Version, tools.Daprd.Path)
	return cleanup, nil
}

// sys is the whole system on real processes, on free ports, for one test:
// the spec's Running, plus what the assertions read.
type sys struct {
	*system.Running
	t        testing.TB
	redis    *redis.Client
	received *receipts
	// brokerRedis is the Redis behind "pubsub" when options.brokerRedis
	// asked for one apart from the state store's; nil otherwise.
	brokerRedis *proc.Redis
}

// options vary a system from the one `make run` starts.
type options struct {
	sub    func(*subscriber.Config) // changes the subscriber's settings, e.g. faults; nil: none
	broker string                   // behind the pubsub component; default proc.BrokerRedis
	mode   proc.Mode
	// channel is how daprd delivers; "" is the spec's default (grpc in
	// the latency mode), or E2E_CHANNEL when set.
	channel system.Channel
	// noAppHealthCheck turns the subscriber daprd's app health check off.
	noAppHealthCheck bool
	// retention is the keeper's window and interval; zero: the defaults.
	retention system.Keeper
	// sentinel: Redis with failover on test hosts instead of a
	// redis-server on loopback.
	sentinel *cluster.Sentinel
	// outbox: the publisher's outbox mode.
	outbox bool
	// brokerRedis puts the "pubsub" component on a redis-server of its
	// own, apart from the state stores' Redis: the broker can then fail
	// while the stores stay up.
	brokerRedis bool
	// records: the processed-order records in the record store.
	records bool
}

// startSystem starts the system as opts say, with a fresh redis-server in
// the test's temp folder; t.Cleanup stops it in reverse order.
func startSystem(t testing.TB, opts ...options) *sys {
	t.Helper()
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	s := &sys{t: t, received: newReceipts()}
	sub := debugNode(system.Node{Config: o.sub, OnLine: s.received.observe, NoAppHealthCheck: o.noAppHealthCheck})
	ro := proc.RedisOptions{Source: proc.RedisServer, Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), Dir: t.TempDir()}
	var sentinels string
	if o.sentinel != nil {
		ro = proc.RedisOptions{Source: proc.RedisExisting, Addr: o.sentinel.Nodes[0].Addr, ExistingPassword: o.sentinel.Password()}
		sentinels = o.sentinel.SentinelAddrs()
	}
	var pubsubMeta map[string]string
	if o.brokerRedis {
		bp, err := proc.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := proc.StartRedis(t.Context(), proc.RedisOptions{Source: proc.RedisServer, Addr: "127.0.0.1:" + strconv.Itoa(bp[0]), Dir: t.TempDir(), Out: &testLog{t: t}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop) // after the system's cleanup: the sidecars go first
		s.brokerRedis, pubsubMeta = b, map[string]string{"redisHost": b.Addr}
	}
	parts := []system.Part{
		system.Redis{Options: ro, Sentinels: sentinels, SentinelMaster: cluster.MasterName},
		system.PubSub{Kind: o.broker, Metadata: pubsubMeta},
	}
	if o.records {
		parts = append(parts, system.RecordStore{})
	}
	if o.outbox {
		parts = append(parts, system.Outbox{})
	}
	parts = append(parts, o.retention, sub, system.PublisherSidecar{})
	s.Running = startRunning(t, system.Env{
		Tools:   tools,
		Mode:    o.mode,
		Channel: cmp.Or(o.channel, system.Channel(os.Getenv("E2E_CHANNEL"))),
		Out:     &testLog{t: t},
	}, parts...)
	if o.sentinel != nil {
		s.redis = o.sentinel.Client()
	} else {
		s.redis = redis.NewClient(&redis.Options{Addr: s.Redis.Addr, Password: s.Redis.Password})
	}
	t.Cleanup(func() { s.redis.Close() })
	return s
}

// debugNode applies E2E_DEBUG: 1 turns on debug logs in the subscriber and
// its daprd, app in the subscriber only, for chasing a failure (the logs
// are shown when a test fails).
func debugNode(n system.Node) system.Node {
	debug := os.Getenv("E2E_DEBUG")
	if debug == "" {
		return n
	}
	if debug != "app" {
		n.DaprLogLevel = "debug"
	}
	change := n.Config
	n.Config = func(c *subscriber.Config) {
		c.LogLevel = "debug"
		if change != nil {
			change(c)
		}
	}
	return n
}

// node is one subscriber app with its sidecar, and what it printed.
type node struct {
	*system.Subscriber
	received *receipts
}

// first is the system's first subscriber as a node.
func (s *sys) first() *node { return &node{Subscriber: s.Sub, received: s.received} }

// addSubscriber starts a subscriber app with app id appID (a replica of
// another when the id is the same) and its sidecar; name tells replicas
// apart in the logs; change changes its settings (nil: none).
func (s *sys) addSubscriber(appID, name string, change func(*subscriber.Config)) *node {
	s.t.Helper()
	rec := newReceipts()
	sub, err := s.AddSubscriber(s.t.Context(), debugNode(system.Node{AppID: appID, Name: name, Config: change, OnLine: rec.observe}))
	if err != nil {
		s.t.Fatal(err)
	}
	return &node{Subscriber: sub, received: rec}
}

// publishHTTP publishes body to topic on component through the publisher's
// sidecar over plain HTTP, as curl would, with the Dapr API token.
func (s *sys) publishHTTP(component, topic, contentType, body string) (int, string) {
	return daprPost(s.t, s.PubDaprd.HTTPURL()+"/v1.0/publish/"+component+"/"+topic, s.Secrets.APIToken, contentType, body)
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

// publish runs the publisher binary to completion, its settings changed by
// change.
func (s *sys) publish(change func(*publisher.Config)) {
	s.t.Helper()
	p, err := s.StartPublisher(change)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(s.t.Context(), 10*time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		p.Stop(time.Second)
		s.t.Fatalf("publisher: %v\n%s", err, p.Tail())
	}
}

// waitDrained polls until the subscriber has printed want distinct orders
// and the consumer group has nothing pending, so no redelivery can follow.
func (s *sys) waitDrained(want int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.received.distinct()
		pending := int64(-1)
		if got >= want {
			if p, err := s.redis.XPending(s.t.Context(), "orders", proc.SubscriberID).Result(); err == nil {
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
	lines  []string          // every output line, for assertions on logs
	bad    []string          // Received lines that did not decode
	seqs   map[int64][]int64 // each order's event sequences, as printed
	nev    int               // Received lines that decoded
}

func newReceipts() *receipts {
	return &receipts{counts: map[int64]int{}, orders: map[int64]order.Order{}, seqs: map[int64][]int64{}}
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
	r.seqs[o.ID] = append(r.seqs[o.ID], o.Sequence())
	r.nev++
}

// events is how many events were printed (an order's life counts each).
func (r *receipts) events() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nev
}

// sequences is a copy of each order's event sequences, in the order printed.
func (r *receipts) sequences() map[int64][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int64][]int64, len(r.seqs))
	for id, s := range r.seqs {
		out[id] = slices.Clone(s)
	}
	return out
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

// lag is how many entries of stream the subscriber's group has not read
// yet (XINFO GROUPS, Redis 7); -1 when unknown.
func (s *sys) lag(stream string) int64 {
	groups, err := s.redis.XInfoGroups(s.t.Context(), stream).Result()
	if err != nil {
		return -1
	}
	for _, g := range groups {
		if g.Name == proc.SubscriberID {
			return g.Lag
		}
	}
	return -1
}

// startRunning starts the system for the test t, fails it at once if that
// fails, and registers Stop with t.Cleanup, as dapr/dapr's integration
// framework does.
func startRunning(t testing.TB, env system.Env, parts ...system.Part) *system.Running {
	t.Helper()
	r, err := system.Start(t.Context(), env, parts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}
