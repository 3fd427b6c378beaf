package retention

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/harness/proc"
)

// startRedis starts a real redis-server for the test (the scripts use
// XINFO and XTRIM MINID as Redis 7 answers them).
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	ports, err := proc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := proc.StartRedis(t.Context(), proc.RedisOptions{Source: proc.RedisServer, Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), Dir: t.TempDir(), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.Password})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// addOld adds n entries with ids 1000-0, 1001-0, … — decades older than
// any window — to stream.
func addOld(t *testing.T, rdb *redis.Client, stream string, n int) {
	t.Helper()
	for i := range n {
		if err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: stream, ID: strconv.Itoa(1000+i) + "-0", Values: []string{"i", strconv.Itoa(i)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// read makes consumer of group read n entries and acknowledges all but
// the ids in keep.
func read(t *testing.T, rdb *redis.Client, stream, group, consumer string, n int64, keep ...string) {
	t.Helper()
	res, err := rdb.XReadGroup(t.Context(), &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{stream, ">"}, Count: n}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		acked := true
		for _, k := range keep {
			if m.ID == k {
				acked = false
			}
		}
		if acked {
			rdb.XAck(t.Context(), stream, group, m.ID)
		}
	}
}

// TestTrimKeepsWhatAGroupNeeds: entries older than the window are trimmed
// only below the lowest entry any group still needs — a stopped group, a
// lagging one, a pending entry older than the rest — and entries inside
// the window stay even when every group is done with them.
func TestTrimKeepsWhatAGroupNeeds(t *testing.T) {
	rdb := startRedis(t)
	ctx := t.Context()
	const s = "orders"
	addOld(t, rdb, s, 10) // 1000-0 … 1009-0
	for _, g := range []string{"stopped", "lagging", "holding"} {
		if err := rdb.XGroupCreate(ctx, s, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	read(t, rdb, s, "lagging", "c", 5)           // read and acked up to 1004-0
	read(t, rdb, s, "holding", "c", 8, "1002-0") // all of 1000–1007 acked but 1002-0
	k := New(rdb, Config{Streams: []string{s, "absent"}, Window: time.Hour}, nil, slog.New(slog.DiscardHandler))

	pass := func(wantNeeded string, wantLen int64) {
		t.Helper()
		reports, err := k.Pass(ctx)
		if err != nil || len(reports) != 1 {
			t.Fatalf("Pass = %+v, %v", reports, err)
		}
		if r := reports[0]; r.Needed != wantNeeded || r.Length != wantLen {
			t.Fatalf("oldest needed %q, %d left; want %q, %d left", r.Needed, r.Length, wantNeeded, wantLen)
		}
	}
	pass("1000-0", 10) // the stopped group has read nothing: all stays
	rdb.XGroupDestroy(ctx, s, "stopped")
	pass("1002-0", 8) // the pending entry of "holding" is the oldest needed
	rdb.XAck(ctx, s, "holding", "1002-0")
	pass("1005-0", 5) // now the first entry the lagging group has not read
	read(t, rdb, s, "lagging", "c", 10)
	read(t, rdb, s, "holding", "c", 10)
	pass("", 0) // all read and acknowledged, all older than the window

	// Inside the window nothing goes, although every group is done.
	for range 5 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: []string{"new", "1"}})
	}
	read(t, rdb, s, "lagging", "c", 10)
	read(t, rdb, s, "holding", "c", 10)
	reports, err := k.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; r.Length != 5 || r.Trimmed != 0 {
		t.Fatalf("after new entries: %d left, %d trimmed; want the 5 new ones left", r.Length, r.Trimmed)
	}
}

// TestIdleConsumersHoldingNothingAreRemoved: a consumer with a pending
// entry stays however idle it is; one holding nothing goes.
func TestIdleConsumersHoldingNothingAreRemoved(t *testing.T) {
	rdb := startRedis(t)
	ctx := t.Context()
	const s = "orders"
	addOld(t, rdb, s, 4)
	rdb.XGroupCreate(ctx, s, "g", "0")
	read(t, rdb, s, "g", "gone-pod", 2)
	read(t, rdb, s, "g", "holding-pod", 2, "1003-0")
	reg := prometheus.NewRegistry()
	k := New(rdb, Config{Streams: []string{s}, Window: time.Hour, ConsumerIdle: time.Millisecond}, NewMetrics(reg), slog.New(slog.DiscardHandler))
	time.Sleep(5 * time.Millisecond) // the idleness the test is about
	reports, err := k.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := reports[0].Removed; len(got) != 1 || got[0] != (Consumer{"g", "gone-pod"}) {
		t.Fatalf("removed %v, want [{g gone-pod}]", got)
	}
	consumers, _ := rdb.XInfoConsumers(ctx, s, "g").Result()
	if len(consumers) != 1 || consumers[0].Name != "holding-pod" || consumers[0].Pending != 1 {
		t.Fatalf("consumers left: %+v", consumers)
	}
	g := reports[0].Groups[0]
	if g.Pending != 1 || g.Lag != 0 || g.OldestPending < 50*365*24*time.Hour {
		t.Fatalf("group report %+v: want 1 pending, no lag, the pending entry decades old", g)
	}
	if v := testutil.ToFloat64(k.metrics.pending.WithLabelValues(s, "g")); v != 1 {
		t.Errorf("redis_stream_group_pending = %v, want 1", v)
	}
	if v := testutil.ToFloat64(k.metrics.windowExceeded.WithLabelValues(s)); v != 1 {
		t.Errorf("retention_window_exceeded = %v, want 1 (a pending entry older than the window)", v)
	}
}

// TestBacklogServesTheLastPass: GET /backlog answers what the last pass saw
// — empty before the first, then the stream's length and each group's lag,
// pending and redeliveries.
func TestBacklogServesTheLastPass(t *testing.T) {
	rdb := startRedis(t)
	ctx := t.Context()
	const s = "orders"
	addOld(t, rdb, s, 5)
	rdb.XGroupCreate(ctx, s, "g", "0")
	read(t, rdb, s, "g", "c", 3, "1001-0")
	// Read the held entry once more, as a redelivery would.
	rdb.XClaim(ctx, &redis.XClaimArgs{Stream: s, Group: "g", Consumer: "c", Messages: []string{"1001-0"}})
	k := New(rdb, Config{Streams: []string{s}, Window: time.Hour}, nil, slog.New(slog.DiscardHandler))
	get := func() Backlog {
		t.Helper()
		rec := httptest.NewRecorder()
		BacklogHandler(k).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/backlog", nil))
		var b Backlog
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("GET /backlog: %d %q: %v", rec.Code, rec.Body, err)
		}
		return b
	}
	if b := get(); !b.PassAt.IsZero() || len(b.Streams) != 0 || b.Window != "1h0m0s" {
		t.Fatalf("before a pass: %+v, want no streams and the window", b)
	}
	if _, err := k.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	b := get()
	if b.PassAt.IsZero() || len(b.Streams) != 1 || b.Streams[0].Stream != s || len(b.Streams[0].Groups) != 1 {
		t.Fatalf("after a pass: %+v", b)
	}
	sb, g := b.Streams[0], b.Streams[0].Groups[0]
	// 1000-0 was read and acknowledged, so it went: 4 entries left.
	if sb.Length != 4 || sb.Bytes <= 0 || !sb.WindowExceeded {
		t.Errorf("stream %+v: want 4 entries, some bytes, the window exceeded", sb)
	}
	if g.Group != "g" || g.Lag != 2 || g.Pending != 1 || g.Redeliveries != 1 || g.OldestPendingSeconds < 1e9 {
		t.Errorf("group %+v: want lag 2, 1 pending redelivered once, decades old", g)
	}
}
