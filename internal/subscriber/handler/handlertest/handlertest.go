// Package handlertest builds handlers for the tests of the subscriber's
// packages: on the in-memory state store, with what they write kept or
// discarded. Nothing outside tests imports it.
package handlertest

import (
	"io"
	"log/slog"
	"time"

	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/testutil"
)

// Fixture is a Handler on the in-memory store, with its output and logs
// kept.
type Fixture struct {
	H    *handler.Handler
	Mem  *storetest.Mem       // the state store's contents; set Fail to break it
	St   *store.Store         // the store the handler writes to, on Mem
	Out  *testutil.SyncBuffer // the "Received message" lines
	Logs *testutil.SyncBuffer // the log, as text
}

// New returns a Fixture whose handler has faults, metrics, a 1 s timeout,
// and reads pubsub/orders.
func New(faults handler.Faults) *Fixture {
	f := &Fixture{Mem: &storetest.Mem{}, Out: &testutil.SyncBuffer{}, Logs: &testutil.SyncBuffer{}}
	f.St = store.New(f.Mem, "statestore", "subscriber")
	f.H = handler.New(handler.Config{
		Store: f.St, Out: f.Out, Log: slog.New(slog.NewTextHandler(f.Logs, nil)),
		Timeout: time.Second, PubSub: "pubsub", Topic: "orders", Faults: faults, Metrics: handler.NewMetrics(),
	})
	return f
}

// Quiet is a Handler as Run builds it, on the in-memory store and with its
// output and logs discarded, so that a benchmark measures only the app's
// own work on a delivery: decode, validate, dedupe, metrics, answer.
func Quiet() *handler.Handler {
	return handler.New(handler.Config{
		Store: store.New(&storetest.Mem{}, "statestore", "subscriber"), Out: io.Discard,
		Log: slog.New(slog.DiscardHandler), Timeout: time.Second, PubSub: "pubsub", Topic: "orders",
		Metrics: handler.NewMetrics(),
	})
}

// StatsJSON is s as /stats answers it.
func StatsJSON(s *handler.Stats) string {
	b, _ := s.MarshalJSON()
	return string(b)
}
