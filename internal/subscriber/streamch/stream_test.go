package streamch

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/subscriber/handler"
)

func TestCheckStreamRuntime(t *testing.T) {
	for version, ok := range map[string]bool{
		"1.18.0": true, "v1.18.3": true, "1.19.0-rc.1": true, "2.0.0": true, "edge": true, "": true,
		"1.16.5": false, "1.17.0": false, "v1.14.4": false,
	} {
		err := CheckStreamRuntime(version)
		if (err == nil) != ok {
			t.Errorf("CheckStreamRuntime(%q) = %v, want ok %v", version, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "-channel grpc") {
			t.Errorf("CheckStreamRuntime(%q) = %q: it does not say what to use instead", version, err)
		}
	}
}

// fakeDaprd is a daprd that answers GetMetadata with a version (after
// failing the first calls, as a daprd still starting does) and counts the
// streams asked of it. Any other call panics: the stream channel makes none
// before its streams are open.
type fakeDaprd struct {
	dapr.Client
	version       string
	failFirst     int
	metadataCalls atomic.Int32
	subscribes    atomic.Int32
}

func (f *fakeDaprd) GetMetadata(context.Context) (*dapr.GetMetadataResponse, error) {
	if int(f.metadataCalls.Add(1)) <= f.failFirst {
		return nil, errors.New("connection refused")
	}
	return &dapr.GetMetadataResponse{ExtendedMetadata: map[string]string{"daprRuntimeVersion": f.version}}, nil
}

func (f *fakeDaprd) Subscribe(context.Context, dapr.SubscriptionOptions) (*dapr.Subscription, error) {
	f.subscribes.Add(1)
	return nil, errors.New("not in this test")
}

func subscriptions() []handler.Subscription {
	return []handler.Subscription{
		{Sub: &common.Subscription{PubsubName: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter"}},
		{Sub: &common.Subscription{PubsubName: "pubsub", Topic: "orders-deadletter"}},
	}
}

func TestRunRefusesAnOldDaprdAndOpensNoStream(t *testing.T) {
	d := &fakeDaprd{version: "1.16.5", failFirst: 2}
	s := New(Options{Client: d, Subscriptions: subscriptions(), Workers: 4, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "1.16.5") {
		t.Fatalf("Run on daprd 1.16.5 = %v, want the refusal naming the version", err)
	}
	if got := d.metadataCalls.Load(); got != 3 {
		t.Errorf("GetMetadata called %d times, want 3: twice refused while daprd starts, then answered", got)
	}
	if got := d.subscribes.Load(); got != 0 {
		t.Errorf("%d streams asked of a refused daprd, want none", got)
	}
}

func TestRunKeepsAskingForTheStreamsUntilStopped(t *testing.T) {
	d := &fakeDaprd{version: "1.18.0"}
	ready := new(handler.Readiness)
	s := New(Options{Client: d, Subscriptions: subscriptions(), Workers: 4, Ready: ready, Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Each subscription's stream is asked for again after a failure.
	for deadline := time.Now().Add(10 * time.Second); d.subscribes.Load() < 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d stream requests in 10 s, want each of the 2 subscriptions asked again", d.subscribes.Load())
		}
	}
	if ready.Subscribed() {
		t.Error("marked subscribed while no stream is open")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after its context ended = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestReadyOnlyWhileEveryStreamIsOpen(t *testing.T) {
	ready := new(handler.Readiness)
	s := New(Options{Subscriptions: subscriptions(), Workers: 1, Ready: ready})
	steps := []struct {
		delta int32
		want  bool
	}{{+1, false}, {+1, true}, {-1, false}, {+1, true}, {-1, false}, {-1, false}}
	for i, st := range steps {
		s.opened(st.delta)
		if ready.Subscribed() != st.want {
			t.Fatalf("step %d (%+d): subscribed = %v, want %v", i, st.delta, ready.Subscribed(), st.want)
		}
	}
}
