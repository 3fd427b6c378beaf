package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// The fault scenarios publish N orders while something breaks, wait until
// the system has drained, and check the durable truth in Redis: every order
// the publisher had acknowledged has exactly one processed record, written
// once; nothing is pending in either consumer group; the dead letters are
// exactly the poison orders. `make chaos` runs them with CHAOS_ORDERS=10000
// and writes the table to CHAOS_REPORT.

// chaosOrders is N: 1,000 in `make test`, more with CHAOS_ORDERS.
func chaosOrders(t *testing.T) int {
	n := 1000
	if v := os.Getenv("CHAOS_ORDERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			t.Fatalf("CHAOS_ORDERS=%q: want a number ≥ 100", v)
		}
	}
	return n
}

// chaosSetup is one mode on one delivery channel.
type chaosSetup struct {
	mode    proc.Mode
	channel system.Channel
	// appRestartsOnly runs only the scenarios that restart the subscriber
	// app, in `make test`; `make chaos` (CHAOS_ORDERS set) runs them all.
	appRestartsOnly bool
	// records keeps the records in the record store; recordsOnly runs
	// only the scenarios that bear on it (recordsPath), in `make test`.
	records, recordsOnly bool
}

func (s chaosSetup) String() string {
	if s.records {
		return string(s.mode) + "/" + string(s.channel) + "/records"
	}
	return string(s.mode) + "/" + string(s.channel)
}

// chaosSetups are the modes and channels the scenarios run on: the
// latency mode on its default channel (grpc), the throughput mode on the
// one it needs (http), and the latency mode on the other two channels,
// stream and http (the original example's shape), with the app-restart scenarios (all
// of them under `make chaos`).
// CHAOS_MODE and CHAOS_CHANNEL keep the setups that match.
func chaosSetups(t *testing.T) []chaosSetup {
	all := []chaosSetup{
		{mode: proc.ModeLatency, channel: system.ChannelGRPC},
		{mode: proc.ModeThroughput, channel: system.ChannelHTTP},
		{mode: proc.ModeLatency, channel: system.ChannelStream, appRestartsOnly: os.Getenv("CHAOS_ORDERS") == ""},
		{mode: proc.ModeLatency, channel: system.ChannelHTTP, appRestartsOnly: os.Getenv("CHAOS_ORDERS") == ""},
		// The throughput mode on the record store, where batches of
		// records are inserted by one script.
		{mode: proc.ModeThroughput, channel: system.ChannelHTTP, records: true, recordsOnly: os.Getenv("CHAOS_ORDERS") == ""},
	}
	mode, channel := os.Getenv("CHAOS_MODE"), os.Getenv("CHAOS_CHANNEL")
	if mode != "" {
		if _, err := proc.ParseMode(mode); err != nil {
			t.Fatalf("CHAOS_MODE: %v", err)
		}
	}
	if _, err := system.ParseChannel(channel); err != nil {
		t.Fatalf("CHAOS_CHANNEL: %v", err)
	}
	var out []chaosSetup
	for _, s := range all {
		if !slices.Contains(system.Channels(tools.Daprd.Version), s.channel) {
			continue // the stream channel before daprd 1.18
		}
		if (mode == "" || string(s.mode) == mode) && (channel == "" || string(s.channel) == channel) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no setup is mode %q on channel %q (the throughput mode needs the http channel)", mode, channel)
	}
	return out
}

type scenario struct {
	name       string
	appRestart bool // the subscriber app alone is restarted
	// recordsPath: it bears on the record store (restarts it, or the
	// Redis it writes to, or makes records conflict); recordsOnly: it
	// needs the record store.
	recordsPath, recordsOnly bool
	sub                      func(*subscriber.Config)
	poison                   int                        // invalid orders published beside the N valid ones
	fault                    func(t *testing.T, s *sys) // runs once, mid-stream; nil for none
}

// result is one row of the chaos table.
type result struct {
	setup                                               chaosSetup
	scenario                                            string
	published, processed, duplicates, deadLetters, lost int
	trimmed                                             int // entries of orders the retention keeper trimmed during the run
	drain                                               time.Duration
}

var (
	resultsMu sync.Mutex
	results   []result
)

func TestFaults(t *testing.T) {
	scenarios := []scenario{
		{name: "subscriber app kill -9", appRestart: true, fault: func(t *testing.T, s *sys) {
			s.Sub.App.Signal(syscall.SIGKILL)
			_ = waitExit(t, s.Sub.App) // killed: the exit error is the point
			restart(t, s.Sub.App)
			if err := proc.WaitApp(t.Context(), s.Sub.App, s.Sub.Port); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "subscriber daprd kill -9", recordsPath: true, fault: func(t *testing.T, s *sys) {
			killAndRestartSidecar(t, s.Sub.Daprd)
		}},
		{name: "publisher daprd kill -9", fault: func(t *testing.T, s *sys) {
			killAndRestartSidecar(t, s.PubDaprd)
		}},
		{name: "record store kill -9", recordsPath: true, recordsOnly: true, fault: func(t *testing.T, s *sys) {
			s.RecordStore.Signal(syscall.SIGKILL)
			_ = waitExit(t, s.RecordStore) // killed: the exit error is the point
			// The records go through it: saves fail while it is down.
			waitFor(t, time.Minute, "a record write refused by the stopped record store", func() bool {
				return slices.ContainsFunc(s.received.logLines(), func(l string) bool { return strings.Contains(l, "in state store records") })
			})
			restart(t, s.RecordStore) // daprd reconnects; the store restores Init's metadata
		}},
		{name: "redis kill -9 and restart on its AOF", fault: func(t *testing.T, s *sys) {
			s.Redis.Process().Signal(syscall.SIGKILL)
			_ = waitExit(t, s.Redis.Process()) // killed: the exit error is the point
			time.Sleep(3 * time.Second)        // down for a while, as a real restart is
			if err := s.Redis.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "redis frozen 15 s (SIGSTOP)", fault: func(t *testing.T, s *sys) {
			s.Redis.Process().Signal(syscall.SIGSTOP)
			time.Sleep(15 * time.Second) // the fault itself, not a wait for readiness
			s.Redis.Process().Signal(syscall.SIGCONT)
		}},
		{name: "consumer group deleted", fault: func(t *testing.T, s *sys) {
			if err := s.redis.XGroupDestroy(t.Context(), "orders", proc.SubscriberID).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "every 10th order fails once", recordsPath: true, sub: func(c *subscriber.Config) { c.Faults.FailFirstEvery = 10 }},
		{name: "50 poison orders mixed in", poison: 50},
		{name: "subscriber SIGTERM in flight", appRestart: true, sub: func(c *subscriber.Config) { c.Faults.Delay = 20 * time.Millisecond }, fault: func(t *testing.T, s *sys) {
			s.Sub.App.Signal(syscall.SIGTERM)
			if err := waitExit(t, s.Sub.App); err != nil {
				t.Errorf("subscriber exited with %v on SIGTERM, want 0", err)
			}
			restart(t, s.Sub.App)
			if err := proc.WaitApp(t.Context(), s.Sub.App, s.Sub.Port); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, set := range chaosSetups(t) {
		t.Run(set.String(), func(t *testing.T) {
			for _, sc := range scenarios {
				if (set.appRestartsOnly && !sc.appRestart) || (set.recordsOnly && !sc.recordsPath) || (sc.recordsOnly && !set.records) {
					continue
				}
				t.Run(sc.name, func(t *testing.T) { runScenario(t, sc, set, chaosOrders(t)) })
			}
		})
	}
	report(t)
}

// keeperWindow is the retention window of the fault suite: short, so that
// the keeper trims the stream while the faults happen (every 250 ms, all
// that every group read and acknowledged more than 3 s ago).
var keeperWindow = system.Keeper{Window: 3 * time.Second, Interval: 250 * time.Millisecond}

func runScenario(t *testing.T, sc scenario, set chaosSetup, n int) {
	// The keeper trims with a 3 s window, but the records must outlive the
	// scenario (they are counted at the end): a longer window for the
	// subscriber's records is safe, a shorter one would not be.
	sub := func(c *subscriber.Config) {
		if sc.sub != nil {
			sc.sub(c)
		}
		c.RetentionWindow = 24 * time.Hour
	}
	s := startSystem(t, options{sub: sub, mode: set.mode, channel: set.channel, retention: keeperWindow, records: set.records})
	ctx := t.Context()
	start := time.Now()
	// Enough attempts, 2 s apart at most, to ride out every fault here.
	pub, err := s.StartPublisher(func(c *publisher.Config) { c.Count, c.Interval, c.Attempts = n, time.Millisecond, 60 })
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	poisonDone := make(chan error, 1)
	go func() { poisonDone <- publishPoison(ctx, s, sc.poison) }()

	if sc.fault != nil {
		waitFor(t, 2*time.Minute, "a quarter of the orders processed", func() bool { return s.received.distinct() >= n/4 })
		if pub.Exited() {
			t.Fatal("the publisher finished before the fault: the fault would not be mid-stream")
		}
		sc.fault(t, s)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := pub.Wait(pctx); err != nil {
		t.Fatalf("publisher did not publish all %d orders: %v\n%s", n, err, pub.Tail())
	}
	if err := <-poisonDone; err != nil {
		t.Fatal(err)
	}

	var processed, deadLetters int
	drained := func() bool {
		processed = s.countKeys("statestore||subscriber/order/*")
		deadLetters = len(s.deadLetterIndex())
		return processed >= n && deadLetters >= sc.poison && s.pending("orders") == 0 && s.pending("orders-deadletter") == 0
	}
	for deadline := time.Now().Add(3 * time.Minute); !drained(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("not drained after 3m: %d records of %d, %d dead letters of %d, pending %d in orders, %d in orders-deadletter",
				processed, n, deadLetters, sc.poison, s.pending("orders"), s.pending("orders-deadletter"))
			break
		}
	}
	drain := time.Since(start)

	lost := s.checkProcessedOnce(proc.SubscriberID, n)
	if lost > 0 {
		s.explainLost(n)
	}
	if processed != n {
		t.Errorf("%d processed records, want %d", processed, n)
	}
	if deadLetters != sc.poison {
		t.Errorf("%d dead letters, want exactly the %d poison orders", deadLetters, sc.poison)
	}
	counts, _, _ := s.received.snapshot()
	for id, c := range counts {
		if c > 1 {
			t.Errorf("order %d printed %d times: its effect ran more than once", id, c)
		}
	}
	dups := 0
	for _, l := range s.received.logLines() {
		if strings.Contains(l, "Duplicate delivery") {
			dups++
		}
	}
	// Drained and acknowledged: the keeper trims every entry once the
	// window has passed.
	var left int64
	waitFor(t, keeperWindow.Window+5*time.Second, "the drained stream trimmed by the keeper", func() bool {
		left, _ = s.redis.XLen(ctx, "orders").Result()
		return left == 0
	})
	r := result{setup: set, scenario: sc.name, published: n, processed: processed, duplicates: dups, deadLetters: deadLetters, lost: lost, drain: drain,
		trimmed: n + sc.poison - int(left)}
	t.Logf("%s, %s: published %d, processed %d, duplicate deliveries %d, dead letters %d, lost %d, drained in %s, %d entries trimmed by the keeper meanwhile",
		r.scenario, r.setup, r.published, r.processed, r.duplicates, r.deadLetters, r.lost, r.drain.Round(100*time.Millisecond), r.trimmed)
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
}

// publishPoison publishes n invalid orders through the publisher's sidecar
// over HTTP, as a careless client would, spread over the run.
func publishPoison(ctx context.Context, s *sys, n int) error {
	for i := range n {
		body := fmt.Sprintf(`{"id":-%d,"message":"poison"}`, i+1)
		if code, answer := s.publishHTTP("pubsub", "orders", "application/json", body); code != http.StatusNoContent {
			return fmt.Errorf("poison publish answered %d %s", code, answer)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func killAndRestartSidecar(t *testing.T, sc *proc.RunningSidecar) {
	sc.Signal(syscall.SIGKILL)
	_ = waitExit(t, sc.Process) // killed: the exit error is the point
	restart(t, sc.Process)
	if err := sc.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func restart(t *testing.T, p *proc.Process) {
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for p to exit and returns its exit error.
func waitExit(t *testing.T, p *proc.Process) error {
	select {
	case <-p.Done():
		return p.Err()
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit", p.Name)
		return nil
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pending is the subscriber's consumer group's count of delivered,
// unacknowledged entries.
func (s *sys) pending(stream string) int64 { return s.pendingOf(stream, proc.SubscriberID) }

// pendingOf is pending for the consumer group of another app.
func (s *sys) pendingOf(stream, group string) int64 {
	p, err := s.redis.XPending(s.t.Context(), stream, group).Result()
	if err != nil {
		return -1 // no group yet: not drained
	}
	return p.Count
}

func (s *sys) countKeys(pattern string) int {
	n := 0
	iter := s.redis.Scan(s.t.Context(), 0, pattern, 1000).Iterator()
	for iter.Next(s.t.Context()) {
		n++
	}
	return n
}

// checkProcessedOnce checks that each of the orders 0…n-1 has exactly one
// record of app's, written once, and returns how many have none (lost).
func (s *sys) checkProcessedOnce(app string, n int) (lost int) {
	s.t.Helper()
	for id, v := range s.versions("statestore||"+app+"/order/", n) {
		switch {
		case v == 0:
			lost++
			s.t.Errorf("%s: order %d was acknowledged to the publisher but never processed", app, id)
		case v != 1:
			s.t.Errorf("%s: order %d's record was written %d times, want once", app, id, v)
		}
	}
	return lost
}

// versions reads how often each of the n order records was written: Dapr's
// Redis state store keeps the record as a hash whose "version" counts writes.
func (s *sys) versions(prefix string, n int) map[int]int {
	ctx := s.t.Context()
	pipe := s.redis.Pipeline()
	for id := range n {
		pipe.HGet(ctx, prefix+strconv.Itoa(id), "version")
	}
	cmds, _ := pipe.Exec(ctx)
	out := make(map[int]int, n)
	for id, c := range cmds {
		v, _ := strconv.Atoi(c.(interface{ Val() string }).Val())
		out[id] = v
	}
	return out
}

// explainLost logs what Redis knows of each order without a record: its
// stream entry and whether the subscriber's group still has it pending, so
// that a loss can be told apart from a delivery not yet made.
func (s *sys) explainLost(n int) {
	ctx := s.t.Context()
	missing := map[string]bool{}
	for id, v := range s.versions("statestore||subscriber/order/", n) {
		if v == 0 {
			missing["order-"+strconv.Itoa(id)] = true
		}
	}
	entries, err := s.redis.XRange(ctx, "orders", "-", "+").Result()
	if err != nil {
		s.t.Logf("XRANGE orders: %v", err)
		return
	}
	pending, _ := s.redis.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "orders", Group: proc.SubscriberID, Start: "-", End: "+", Count: 10000}).Result()
	for _, e := range entries {
		data, _ := e.Values["data"].(string)
		var ce struct{ ID string }
		if json.Unmarshal([]byte(data), &ce) != nil || !missing[ce.ID] {
			continue
		}
		state := "acknowledged (not pending)"
		for _, p := range pending {
			if p.ID == e.ID {
				state = fmt.Sprintf("pending at %s for %s, delivered %d times", p.Consumer, p.Idle, p.RetryCount)
			}
		}
		s.t.Logf("lost %s: stream entry %s, %s", ce.ID, e.ID, state)
		delete(missing, ce.ID)
	}
	for id := range missing {
		s.t.Logf("lost %s: no stream entry at all", id)
	}
	dl, _ := s.redis.XLen(ctx, "orders-deadletter").Result()
	s.t.Logf("orders-deadletter holds %d entries", dl)
}

// deadLetterIndex is the list of dead-letter event ids the subscriber kept.
func (s *sys) deadLetterIndex() []string {
	raw, err := s.redis.HGet(s.t.Context(), "statestore||subscriber/deadletters", "data").Result()
	if err != nil {
		return nil
	}
	var ids []string
	_ = json.Unmarshal([]byte(raw), &ids)
	return ids
}

func report(t *testing.T) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode/channel\tpublished\tprocessed\tduplicates delivered\tdead letters\tlost\tdrain time\ttrimmed\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.1f s\t%d\t\n", r.scenario, r.setup, r.published, r.processed, r.duplicates, r.deadLetters, r.lost, r.drain.Seconds(), r.trimmed)
	}
	tw.Flush()
	t.Log("\n" + b.String())
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
