package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/testutil"
)

type fakeClient = testutil.Publisher

var quiet = slog.New(slog.DiscardHandler)

func testConfig() Config {
	return Config{Count: 3, StartID: 5, PubSub: "pubsub", Topic: "orders", DaprAddress: "x", Attempts: 3}
}

// modes are the two ways of publishing, for tests that hold for both.
var modes = map[string]int{"single": 1, "bulk": 2}

func TestPublishSendsOrdersAsJSONWithStableIDs(t *testing.T) {
	for name, bulk := range modes {
		t.Run(name, func(t *testing.T) {
			f := &fakeClient{}
			cfg := testConfig()
			cfg.Bulk = bulk
			before := time.Now().UTC()
			if err := Publish(t.Context(), f, cfg, quiet); err != nil {
				t.Fatal(err)
			}
			if len(f.Got) != 3 {
				t.Fatalf("published %d orders, want 3", len(f.Got))
			}
			for i, req := range f.Got {
				id := int64(5 + i)
				if req.PubsubName != "pubsub" || req.Topic != "orders" {
					t.Errorf("order %d went to %s/%s", id, req.PubsubName, req.Topic)
				}
				if req.DataContentType != "application/json" {
					t.Errorf("order %d content type = %q, want application/json", id, req.DataContentType)
				}
				if got, want := req.Metadata[order.CloudEventIDKey], order.CloudEventID(id); got != want {
					t.Errorf("order %d cloudevent.id = %q, want %q", id, got, want)
				}
				var o order.Order
				if err := json.Unmarshal(req.Data, &o); err != nil || o.ID != id || o.Message != order.New(id).Message {
					t.Errorf("order %d data = %s (%v), want %+v", id, req.Data, err, order.New(id))
				}
				if o.SentAt.Before(before.Truncate(time.Second)) || o.SentAt.After(time.Now().Add(time.Second)) || o.SentAt.Location() != time.UTC {
					t.Errorf("order %d sent_at = %v, want the publish time in UTC", id, o.SentAt)
				}
			}
			if bulk > 1 && (len(f.Batches) != 2 || f.Batches[0] != 2 || f.Batches[1] != 1) {
				t.Errorf("bulk calls of %v entries, want [2 1]", f.Batches)
			}
		})
	}
}

func TestPublishRetriesWithTheSameID(t *testing.T) {
	for name, bulk := range modes {
		t.Run(name, func(t *testing.T) {
			f := &fakeClient{Failures: 2}
			cfg := testConfig()
			cfg.Count, cfg.Bulk = 1, bulk
			if err := Publish(t.Context(), f, cfg, quiet); err != nil {
				t.Fatalf("Publish after 2 transient failures: %v", err)
			}
			if f.Calls != 3 || len(f.Got) != 1 || f.Got[0].Metadata[order.CloudEventIDKey] != order.CloudEventID(5) {
				t.Fatalf("calls = %d, published = %v", f.Calls, f.Got)
			}
		})
	}
}

func TestPublishGivesUpWithTheReason(t *testing.T) {
	for name, bulk := range modes {
		t.Run(name, func(t *testing.T) {
			f := &fakeClient{Failures: 100}
			cfg := testConfig()
			cfg.Bulk = bulk
			err := Publish(t.Context(), f, cfg, quiet)
			if err == nil || !strings.Contains(err.Error(), "order") || !strings.Contains(err.Error(), " 5") ||
				!strings.Contains(err.Error(), "after 3 attempt(s)") || !strings.Contains(err.Error(), "sidecar unavailable") {
				t.Fatalf("Publish error = %v, want one naming the order, the attempts and the cause", err)
			}
			if f.Calls != 3 {
				t.Fatalf("calls = %d, want 3 (cfg.Attempts)", f.Calls)
			}
		})
	}
}

func TestPublishDoesNotRetryARefusal(t *testing.T) {
	for name, bulk := range modes {
		t.Run(name, func(t *testing.T) {
			f := &fakeClient{Failures: 100, Err: status.Error(codes.InvalidArgument, "pubsub nope is not found")}
			cfg := testConfig()
			cfg.Bulk = bulk
			err := Publish(t.Context(), f, cfg, quiet)
			if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "not found") || f.Calls != 1 {
				t.Fatalf("Publish = %v after %d calls, want one call and the refusal", err, f.Calls)
			}
		})
	}
}

// TestBulkRetriesOnlyTheFailedEntries: the sidecar fails some entries of a
// batch; only those are sent again, under their ids, and counted.
func TestBulkRetriesOnlyTheFailedEntries(t *testing.T) {
	tests := map[string]struct {
		fail      func(call int, id string) bool
		attempts  int
		wantSent  int
		wantCalls []int // entries per call
		wantErr   string
		retries   float64
		failures  float64
	}{
		"one entry once": {
			fail:     func(call int, id string) bool { return call == 1 && id == "order-6" },
			attempts: 3, wantSent: 4, wantCalls: []int{4, 1}, retries: 1,
		},
		"two entries twice": {
			fail:     func(call int, id string) bool { return call <= 2 && (id == "order-5" || id == "order-8") },
			attempts: 3, wantSent: 4, wantCalls: []int{4, 2, 2}, retries: 4,
		},
		"one entry always": {
			fail:     func(_ int, id string) bool { return id == "order-7" },
			attempts: 3, wantSent: 3, wantCalls: []int{4, 1, 1}, wantErr: "orders 7 to pubsub/orders failed after 3 attempt(s)",
			retries: 2, failures: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &fakeClient{FailEntry: func(call int, e dapr.PublishEventsEvent) bool {
				return tc.fail(call, e.Metadata[order.CloudEventIDKey])
			}}
			cfg := testConfig()
			cfg.Count, cfg.Bulk, cfg.Attempts = 4, 10, tc.attempts
			m := NewMetrics()
			p := &Publisher{Client: f, Config: cfg, Log: quiet, Metrics: m}
			sent, err := p.PublishOrders(t.Context(), generateN(cfg))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if sent != tc.wantSent || fmt.Sprint(f.Batches) != fmt.Sprint(tc.wantCalls) {
				t.Fatalf("sent %d in calls of %v entries, want %d in %v", sent, f.Batches, tc.wantSent, tc.wantCalls)
			}
			seen := map[string]int{}
			for _, req := range f.Got {
				seen[req.Metadata[order.CloudEventIDKey]]++
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s published %d times, want once", id, n)
				}
			}
			if got := promtest.ToFloat64(m.published); got != float64(tc.wantSent) {
				t.Errorf("orders_published_total = %g, want %d", got, tc.wantSent)
			}
			if got := promtest.ToFloat64(m.retries); got != tc.retries {
				t.Errorf("orders_publish_retries_total = %g, want %g", got, tc.retries)
			}
			if got := promtest.ToFloat64(m.failures); got != tc.failures {
				t.Errorf("orders_publish_failures_total = %g, want %g", got, tc.failures)
			}
		})
	}
}

// TestGeneratedLives: -events, -shuffle and -share publish every event of
// every order's life once over the publishers, in sequence without
// -shuffle, and out of it with.
func TestGeneratedLives(t *testing.T) {
	base := testConfig()
	base.Count, base.StartID, base.Events = 50, 100, 4
	inOrder := generateN(base)
	if len(inOrder) != 200 || inOrder[0] != order.New(100) || inOrder[1] != order.New(100).Event(2, order.TypePaid) || inOrder[7].EventID() != "order-101-4" {
		t.Fatalf("lives in order: %d events, first %+v %+v, eighth %s", len(inOrder), inOrder[0], inOrder[1], inOrder[7].EventID())
	}
	for _, shuffle := range []int{0, 7} {
		seen := map[string]int{}
		outOfOrder := 0
		for _, share := range []string{"1/3", "2/3", "3/3"} {
			cfg := base
			cfg.Shuffle, cfg.Share = shuffle, share
			last := map[int64]int64{}
			for _, o := range generateN(cfg) {
				if err := o.Validate(); err != nil {
					t.Fatal(err)
				}
				seen[o.EventID()]++
				if o.Sequence() < last[o.ID] {
					outOfOrder++
				}
				last[o.ID] = o.Sequence()
			}
		}
		if len(seen) != 200 {
			t.Errorf("shuffle %d: %d distinct events over three shares, want 200", shuffle, len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("shuffle %d: %s published %d times", shuffle, id, n)
			}
		}
		if (shuffle > 1) != (outOfOrder > 0) {
			t.Errorf("shuffle %d: %d events came after a later one of their order", shuffle, outOfOrder)
		}
	}
	for _, bad := range []string{"0/2", "3/2", "1", "a/b"} {
		cfg := base
		cfg.Share = bad
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "-share") {
			t.Errorf("-share %s: %v", bad, err)
		}
	}
}

// generateN is cfg's generated orders as a slice.
func generateN(cfg Config) []order.Order {
	var orders []order.Order
	next := generated(cfg)
	for i := 0; ; i++ {
		o, ok := next(i)
		if !ok {
			return orders
		}
		orders = append(orders, o)
	}
}

func TestPublishStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cfg := testConfig()
	cfg.Interval = time.Hour
	f := &fakeClient{}
	done := make(chan error, 1)
	go func() { done <- Publish(ctx, f, cfg, quiet) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Publish = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish did not return after cancel")
	}
}

func TestParseConfig(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tests := map[string]struct {
		env     map[string]string
		args    []string
		want    func(Config) bool
		wantErr string
	}{
		"defaults": {want: func(c Config) bool {
			return c.Count == 10 && c.Interval == time.Second && c.PubSub == "pubsub" && c.Topic == "orders" && c.DaprAddress == "127.0.0.1:50001"
		}},
		"env":              {env: map[string]string{"PUBLISH_COUNT": "3", "DAPR_GRPC_PORT": "6000", "TOPIC_NAME": "t"}, want: func(c Config) bool { return c.Count == 3 && c.DaprAddress == "127.0.0.1:6000" && c.Topic == "t" }},
		"endpoint wins":    {env: map[string]string{"DAPR_GRPC_ENDPOINT": "h:1", "DAPR_GRPC_PORT": "6000"}, want: func(c Config) bool { return c.DaprAddress == "h:1" }},
		"flag over env":    {env: map[string]string{"PUBLISH_COUNT": "3"}, args: []string{"-count", "7"}, want: func(c Config) bool { return c.Count == 7 }},
		"bad env":          {env: map[string]string{"PUBLISH_COUNT": "many"}, wantErr: "PUBLISH_COUNT"},
		"bad interval":     {env: map[string]string{"PUBLISH_INTERVAL": "5"}, wantErr: "PUBLISH_INTERVAL"},
		"negative":         {args: []string{"-count", "-2"}, wantErr: "-count must be"},
		"forever":          {args: []string{"-count", "-1", "-rate", "5"}, want: func(c Config) bool { return c.Count == Forever && c.File == "" }},
		"forever env":      {env: map[string]string{"PUBLISH_COUNT": "-1"}, want: func(c Config) bool { return c.Count == Forever }},
		"file not forever": {args: []string{"-count", "-1", "-file", "x"}, want: func(c Config) bool { return c.File == "x" }},
		"bulk default":     {want: func(c Config) bool { return c.Bulk == 1 && c.MetricsAddress == "" }},
		"bulk env":         {env: map[string]string{"PUBLISH_BULK": "100"}, want: func(c Config) bool { return c.Bulk == 100 }},
		"bulk flag":        {env: map[string]string{"PUBLISH_BULK": "100"}, args: []string{"-bulk", "7"}, want: func(c Config) bool { return c.Bulk == 7 }},
		"bad bulk":         {args: []string{"-bulk", "0"}, wantErr: "-bulk must be ≥ 1"},
		"bad bulk env":     {env: map[string]string{"PUBLISH_BULK": "lots"}, wantErr: "PUBLISH_BULK"},
		"outbox default":   {want: func(c Config) bool { return !c.Outbox && c.OrderStore == "orderstore" }},
		"outbox env":       {env: map[string]string{"PUBLISH_OUTBOX": "true", "ORDER_STORE": "s"}, want: func(c Config) bool { return c.Outbox && c.OrderStore == "s" }},
		"outbox flag":      {args: []string{"-outbox"}, want: func(c Config) bool { return c.Outbox }},
		"bad outbox env":   {env: map[string]string{"PUBLISH_OUTBOX": "maybe"}, wantErr: "PUBLISH_OUTBOX"},
		"outbox and bulk":  {args: []string{"-outbox", "-bulk", "10"}, wantErr: "-outbox stores one order per transaction"},
		"metrics env":      {env: map[string]string{"PUBLISH_METRICS_ADDRESS": "127.0.0.1:9091"}, want: func(c Config) bool { return c.MetricsAddress == "127.0.0.1:9091" }},
		"stray arg":        {args: []string{"10"}, wantErr: "unexpected argument"},
		"rate env":         {env: map[string]string{"PUBLISH_RATE": "250"}, want: func(c Config) bool { return c.Rate == 250 && c.pause() == 4*time.Millisecond }},
		"bad rate":         {env: map[string]string{"PUBLISH_RATE": "fast"}, wantErr: "PUBLISH_RATE"},
		"negative rate":    {args: []string{"-rate", "-3"}, wantErr: "-rate must be"},
		"unknown flag":     {args: []string{"-nope"}, wantErr: "not defined"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env = tc.env
			c, err := ParseConfig(tc.args, getenv, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.want(c) {
				t.Fatalf("ParseConfig = %+v, %v", c, err)
			}
		})
	}
}

func TestReadOrdersNamesTheBadLine(t *testing.T) {
	good := "{\"id\":1,\"message\":\"a\"}\n\n{\"id\":2,\"message\":\"b\"}\n"
	orders, err := ReadOrders(strings.NewReader(good))
	if err != nil || len(orders) != 2 || orders[1] != (order.Order{ID: 2, Message: "b"}) {
		t.Fatalf("ReadOrders = %+v, %v", orders, err)
	}
	bad := "{\"id\":1,\"message\":\"a\"}\n{\"id\":-2,\"message\":\"b\"}\n"
	if _, err := ReadOrders(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "id must be") {
		t.Fatalf("ReadOrders(bad) = %v, want an error naming line 2", err)
	}
}

func TestPublishOrdersKeepsTheRate(t *testing.T) {
	cfg := testConfig()
	cfg.Rate = 100 // 10 ms apart
	orders := generateN(Config{Count: 5})
	start := time.Now()
	sent, err := PublishOrders(t.Context(), &fakeClient{}, cfg, orders, quiet)
	if err != nil || sent != 5 {
		t.Fatalf("PublishOrders = %d, %v", sent, err)
	}
	if elapsed := time.Since(start); elapsed < 40*time.Millisecond {
		t.Fatalf("5 orders at 100/s took %s, want at least the 40 ms the schedule asks", elapsed)
	}
}

func TestPublishOrdersReportsHowManyWereSent(t *testing.T) {
	f := &fakeClient{}
	cfg := testConfig()
	cfg.Attempts = 1
	f.Failures = 0
	orders := []order.Order{{ID: 1, Message: "a"}, {ID: -1, Message: "invalid"}, {ID: 3, Message: "c"}}
	sent, err := PublishOrders(t.Context(), f, cfg, orders, quiet)
	if sent != 1 || err == nil || len(f.Got) != 1 {
		t.Fatalf("PublishOrders = %d, %v (published %d); want 1 sent, then the invalid order's error", sent, err, len(f.Got))
	}
}

// TestConfigEnvRoundTrip: Env renders every setting, so a child process
// started with it reads the same Config back.
func TestConfigEnvRoundTrip(t *testing.T) {
	all := Config{Count: Forever, StartID: 40, Interval: 2 * time.Millisecond, PubSub: "ps", Topic: "t", DaprAddress: "10.0.0.1:50009",
		Attempts: 60, Rate: 12.5, File: "orders.jsonl", Bulk: 1, MetricsAddress: "127.0.0.1:9091", Outbox: true, OrderStore: "orders2",
		DaprAPIToken: "secret", LogLevel: "debug", LogFormat: "json", Events: 3, Shuffle: 8, Share: "2/3"}
	testutil.EnvRoundTrip(t, DefaultConfig(), all, Config.Env, ParseConfig, "Bulk") // -outbox takes no -bulk; bulk is tried below
	bulk := DefaultConfig()
	bulk.Bulk = 100
	testutil.EnvRoundTrip(t, DefaultConfig(), bulk, Config.Env, ParseConfig, "Count", "StartID", "Interval", "PubSub", "Topic", "DaprAddress", "Attempts", "Rate",
		"File", "MetricsAddress", "Outbox", "OrderStore", "DaprAPIToken", "LogLevel", "LogFormat", "Events", "Shuffle", "Share")
}
