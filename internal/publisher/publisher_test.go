package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/testutil"
)

type fakeClient = testutil.Publisher

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig() Config {
	return Config{Count: 3, StartID: 5, PubSub: "pubsub", Topic: "orders", DaprAddress: "x", Attempts: 3}
}

func TestPublishSendsOrdersAsJSONWithStableIDs(t *testing.T) {
	f := &fakeClient{}
	if err := Publish(t.Context(), f, testConfig(), quiet); err != nil {
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
		if got, want := req.Metadata["cloudevent.id"], CloudEventID(id); got != want {
			t.Errorf("order %d cloudevent.id = %q, want %q", id, got, want)
		}
		var o order.Order
		if err := json.Unmarshal(req.Data, &o); err != nil || o != order.New(id) {
			t.Errorf("order %d data = %s (%v), want %+v", id, req.Data, err, order.New(id))
		}
	}
}

func TestPublishRetriesWithTheSameID(t *testing.T) {
	f := &fakeClient{Failures: 2}
	cfg := testConfig()
	cfg.Count = 1
	if err := Publish(t.Context(), f, cfg, quiet); err != nil {
		t.Fatalf("Publish after 2 transient failures: %v", err)
	}
	if f.Calls != 3 || len(f.Got) != 1 || f.Got[0].Metadata["cloudevent.id"] != CloudEventID(5) {
		t.Fatalf("calls = %d, published = %v", f.Calls, f.Got)
	}
}

func TestPublishGivesUpWithTheReason(t *testing.T) {
	f := &fakeClient{Failures: 100}
	err := Publish(t.Context(), f, testConfig(), quiet)
	if err == nil || !strings.Contains(err.Error(), "order 5") || !strings.Contains(err.Error(), "after 3 attempt(s)") ||
		!strings.Contains(err.Error(), "sidecar unavailable") {
		t.Fatalf("Publish error = %v, want one naming the order, the attempts and the cause", err)
	}
	if f.Calls != 3 {
		t.Fatalf("calls = %d, want 3 (cfg.Attempts)", f.Calls)
	}
}

func TestPublishDoesNotRetryARefusal(t *testing.T) {
	f := &fakeClient{Failures: 100, Err: status.Error(codes.InvalidArgument, "pubsub nope is not found")}
	err := Publish(t.Context(), f, testConfig(), quiet)
	if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), "not found") || f.Calls != 1 {
		t.Fatalf("Publish = %v after %d calls, want one call and the refusal", err, f.Calls)
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
		"env":           {env: map[string]string{"PUBLISH_COUNT": "3", "DAPR_GRPC_PORT": "6000", "TOPIC_NAME": "t"}, want: func(c Config) bool { return c.Count == 3 && c.DaprAddress == "127.0.0.1:6000" && c.Topic == "t" }},
		"endpoint wins": {env: map[string]string{"DAPR_GRPC_ENDPOINT": "h:1", "DAPR_GRPC_PORT": "6000"}, want: func(c Config) bool { return c.DaprAddress == "h:1" }},
		"flag over env": {env: map[string]string{"PUBLISH_COUNT": "3"}, args: []string{"-count", "7"}, want: func(c Config) bool { return c.Count == 7 }},
		"bad env":       {env: map[string]string{"PUBLISH_COUNT": "many"}, wantErr: "PUBLISH_COUNT"},
		"bad interval":  {env: map[string]string{"PUBLISH_INTERVAL": "5"}, wantErr: "PUBLISH_INTERVAL"},
		"negative":      {args: []string{"-count", "-1"}, wantErr: "-count must be"},
		"stray arg":     {args: []string{"10"}, wantErr: "unexpected argument"},
		"rate env":      {env: map[string]string{"PUBLISH_RATE": "250"}, want: func(c Config) bool { return c.Rate == 250 && c.pause() == 4*time.Millisecond }},
		"bad rate":      {env: map[string]string{"PUBLISH_RATE": "fast"}, wantErr: "PUBLISH_RATE"},
		"negative rate": {args: []string{"-rate", "-3"}, wantErr: "-rate must be"},
		"unknown flag":  {args: []string{"-nope"}, wantErr: "not defined"},
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
	orders := generate(Config{Count: 5})
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
