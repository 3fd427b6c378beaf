package handler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

func TestHandleOrder(t *testing.T) {
	tests := map[string]struct {
		event    common.TopicEvent
		wantErr  bool
		wantOut  string
		wantWarn bool
	}{
		"object":    {event: common.TopicEvent{ID: "a", RawData: []byte(`{"id":1,"message":"hi"}`)}, wantOut: `Received message: {"id": 1, "message": "hi"}` + "\n"},
		"string":    {event: common.TopicEvent{ID: "b", RawData: []byte(`"{\"id\":2,\"message\":\"hi\"}"`)}, wantOut: `Received message: {"id": 2, "message": "hi"}` + "\n", wantWarn: true},
		"data only": {event: common.TopicEvent{ID: "c", Data: map[string]any{"id": 3, "message": "m"}}, wantOut: `Received message: {"id": 3, "message": "m"}` + "\n"},
		"bad shape": {event: common.TopicEvent{ID: "d", RawData: []byte(`{"order":1}`)}, wantErr: true},
		"empty":     {event: common.TopicEvent{ID: "e"}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := handlertest.New(handler.Faults{})
			retry, err := f.H.HandleOrder(t.Context(), &tc.event)
			if retry {
				t.Fatalf("retry = true; an order is never retried for its data")
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if f.Out.String() != tc.wantOut {
				t.Fatalf("out = %q, want %q", f.Out, tc.wantOut)
			}
			if got := strings.Contains(f.Logs.String(), "application/json"); got != tc.wantWarn {
				t.Fatalf("content-type warning logged = %v, want %v; logs: %s", got, tc.wantWarn, f.Logs)
			}
			if tc.wantErr && (!strings.Contains(f.Logs.String(), "event_id="+tc.event.ID) || f.H.Stats.Dropped.Load() != 1) {
				t.Fatalf("drop not counted or not logged with the event id: %s", f.Logs)
			}
		})
	}
}

func TestDuplicateDeliveriesApplyTheEffectOnce(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	ev := common.TopicEvent{ID: "order-9", RawData: []byte(`{"id":9,"message":"m"}`)}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := ev
			if retry, err := f.H.HandleOrder(t.Context(), &e); retry || err != nil {
				t.Errorf("delivery answered retry=%v err=%v, want SUCCESS", retry, err)
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(f.Out.String(), "Received message"); got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
	if f.H.Stats.Processed.Load() != 1 || f.H.Stats.Duplicates.Load() != 9 {
		t.Fatalf("stats = %s", handlertest.StatsJSON(&f.H.Stats))
	}
	if f.Mem.Version("subscriber/order/9") != 1 {
		t.Fatalf("record written %d times", f.Mem.Version("subscriber/order/9"))
	}
	if !strings.Contains(f.Logs.String(), "Duplicate delivery") {
		t.Fatal("duplicates not logged")
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	down := true
	f.Mem.Fail = func(string, string) error {
		if down {
			return storetest.ErrUnavailable
		}
		return nil
	}
	ev := &common.TopicEvent{ID: "x", RawData: []byte(`{"id":1,"message":"m"}`)}
	if retry, err := f.H.HandleOrder(t.Context(), ev); !retry || !errors.Is(err, storetest.ErrUnavailable) {
		t.Fatalf("store down: retry=%v err=%v, want RETRY", retry, err)
	}
	if f.Out.String() != "" {
		t.Fatal("effect applied although the record was not written")
	}
	down = false
	if retry, err := f.H.HandleOrder(t.Context(), ev); retry || err != nil {
		t.Fatalf("store back: retry=%v err=%v, want SUCCESS", retry, err)
	}
}

// TestAWriteThatLandedDespiteItsErrorIsCompleted: the record write is
// applied but its call fails (daprd killed mid-call). If the store can be
// read at once, the record's own attempt token shows the write landed and
// the effect applies; if not, the redelivery finds the record of its own
// failed attempt and applies the effect then — once either way, and a
// later delivery is a duplicate.
func TestAWriteThatLandedDespiteItsErrorIsCompleted(t *testing.T) {
	for _, readable := range []bool{true, false} {
		t.Run(fmt.Sprint("readable after the failed call: ", readable), func(t *testing.T) {
			f := handlertest.New(handler.Faults{})
			broken := true
			f.Mem.FailAfterSave = func(string) error {
				if broken {
					return storetest.ErrUnavailable
				}
				return nil
			}
			f.Mem.Fail = func(op, _ string) error {
				if broken && op == "get" && !readable {
					return storetest.ErrUnavailable
				}
				return nil
			}
			ev := &common.TopicEvent{ID: "order-1", RawData: []byte(`{"id":1,"message":"m"}`)}
			retry, err := f.H.HandleOrder(t.Context(), ev)
			if readable != (!retry && err == nil) {
				t.Fatalf("call broken after the write: retry=%v err=%v; want SUCCESS only when the record can be read", retry, err)
			}
			broken = false
			for range 2 {
				if retry, err := f.H.HandleOrder(t.Context(), ev); retry || err != nil {
					t.Fatalf("redelivery: retry=%v err=%v, want SUCCESS", retry, err)
				}
			}
			if got := strings.Count(f.Out.String(), "Received message"); got != 1 {
				t.Fatalf("effect applied %d times, want once:\n%s", got, f.Out.String())
			}
			if p, d := f.H.Stats.Processed.Load(), f.H.Stats.Duplicates.Load(); p != 1 || d != int64(map[bool]int{true: 2, false: 1}[readable]) {
				t.Fatalf("%d processed, %d duplicates", p, d)
			}
		})
	}
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	f.Mem.Fail = func(string, string) error { panic("boom") }
	retry, err := f.H.HandleOrder(t.Context(), &common.TopicEvent{ID: "p-1", RawData: []byte(`{"id":1,"message":"m"}`)})
	if !retry || err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: retry=%v err=%v, want RETRY", retry, err)
	}
	if !strings.Contains(f.Logs.String(), "event_id=p-1") {
		t.Fatalf("panic not logged with the event id: %s", f.Logs)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	f := handlertest.New(handler.Faults{Delay: time.Hour})
	f.H.Timeout = 20 * time.Millisecond
	retry, err := f.H.HandleOrder(t.Context(), &common.TopicEvent{RawData: []byte(`{"id":1,"message":"m"}`)})
	if !retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow order: retry=%v err=%v, want RETRY on the deadline", retry, err)
	}
}

func TestFailFirstEveryFailsOnlyTheFirstDelivery(t *testing.T) {
	f := handlertest.New(handler.Faults{FailFirstEvery: 10})
	ev := func(id string) *common.TopicEvent {
		return &common.TopicEvent{RawData: []byte(`{"id":` + id + `,"message":"m"}`)}
	}
	if retry, _ := f.H.HandleOrder(t.Context(), ev("20")); !retry {
		t.Fatal("first delivery of order 20 not failed")
	}
	if retry, err := f.H.HandleOrder(t.Context(), ev("20")); retry || err != nil {
		t.Fatalf("second delivery of order 20: %v %v", retry, err)
	}
	if retry, err := f.H.HandleOrder(t.Context(), ev("21")); retry || err != nil {
		t.Fatalf("order 21: %v %v", retry, err)
	}
}

func TestDeadLettersAreUnwrappedAndKeptOnce(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	original := `{"id":"order-3","topic":"orders","pubsubname":"pubsub","datacontenttype":"application/json","data":{"id":-3,"message":"x"}}`
	for range 2 { // redelivered: stored once
		if retry, err := f.H.HandleDeadLetter(t.Context(), &common.TopicEvent{ID: "wrapper", RawData: []byte(original)}); retry || err != nil {
			t.Fatalf("dead letter: %v %v", retry, err)
		}
	}
	if retry, err := f.H.HandleDeadLetter(t.Context(), &common.TopicEvent{RawData: []byte("not json at all")}); retry || err != nil {
		t.Fatalf("raw dead letter: %v %v", retry, err)
	}
	list, err := f.St.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || f.H.Stats.DeadLetters.Load() != 2 {
		t.Fatalf("kept %d dead letters (%d counted), want 2: %+v", len(list), f.H.Stats.DeadLetters.Load(), list)
	}
	dl := list[0]
	if dl.EventID != "order-3" || dl.Topic != "orders" || string(dl.Data) != `{"id":-3,"message":"x"}` || !strings.Contains(dl.Reason, "id must be ≥ 0") {
		t.Fatalf("dead letter = %+v", dl)
	}
	if raw := list[1]; !strings.HasPrefix(raw.EventID, "raw-") || string(raw.Data) != "not json at all" || !strings.Contains(raw.Reason, "not a CloudEvent") {
		t.Fatalf("raw dead letter = %+v", raw)
	}
}

func TestDeadLetterStoreDownIsRetried(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	f.Mem.Fail = func(string, string) error { return storetest.ErrUnavailable }
	if retry, err := f.H.HandleDeadLetter(t.Context(), &common.TopicEvent{RawData: []byte(`{"id":"e1","data":{}}`)}); !retry || err == nil {
		t.Fatalf("store down: retry=%v err=%v, want RETRY", retry, err)
	}
}

// TestConflictingDuplicateIsDeadLettered: an order republished with the same
// id but another message keeps the first write and goes to the dead-letter
// topic with the reason; an identical redelivery stays a quiet duplicate.
func TestConflictingDuplicateIsDeadLettered(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	ctx := t.Context()
	deliver := func(msg string) (bool, error) {
		return f.H.HandleOrder(ctx, &common.TopicEvent{ID: "order-506", RawData: []byte(`{"id":506,"message":"` + msg + `"}`)})
	}
	if retry, err := deliver("first"); retry || err != nil {
		t.Fatalf("first delivery = %v, %v", retry, err)
	}
	retry, err := deliver("second")
	if retry || err == nil || err.Error() != "conflicting duplicate of order 506: message differs" {
		t.Fatalf("conflicting delivery = %v, %v; want DROP with the reason", retry, err)
	}
	if retry, err := deliver("first"); retry || err != nil {
		t.Fatalf("identical redelivery = %v, %v; want a quiet SUCCESS", retry, err)
	}
	if c, d := f.H.Stats.Conflicts.Load(), f.H.Stats.Duplicates.Load(); c != 1 || d != 1 {
		t.Errorf("conflicts %d, duplicates %d; want 1 and 1", c, d)
	}
	if !strings.Contains(f.Logs.String(), "Conflicting duplicate") {
		t.Error("no WARN line for the conflict")
	}
	rec, _, err := f.St.ProcessedRecord(ctx, 506)
	if err != nil || rec.Order.Message != "first" {
		t.Fatalf("record = %+v, %v; want the first write kept", rec, err)
	}
	// daprd hands the dropped CloudEvent to the dead-letter route.
	ce := `{"id":"order-506","specversion":"1.0","source":"publisher","type":"com.dapr.event.sent","datacontenttype":"application/json","data":{"id":506,"message":"second"}}`
	if retry, err := f.H.HandleDeadLetter(ctx, &common.TopicEvent{ID: "order-506", RawData: []byte(ce)}); retry || err != nil {
		t.Fatalf("dead letter = %v, %v", retry, err)
	}
	dls, err := f.St.DeadLetters(ctx)
	if err != nil || len(dls) != 1 || !strings.HasPrefix(dls[0].Reason, "conflicting duplicate of order 506: message differs") {
		t.Fatalf("dead letters = %+v, %v; want one with the conflict as its reason", dls, err)
	}
}

// TestEveryHandlerHasTheMiddleware: both handlers run in the same
// middleware, so a panic in either is recovered into RETRY and counted,
// measured, observed and traced the same way.
func TestEveryHandlerHasTheMiddleware(t *testing.T) {
	for name, handle := range map[string]func(*handler.Handler) common.TopicEventHandler{
		"orders":       func(h *handler.Handler) common.TopicEventHandler { return h.HandleOrder },
		"dead letters": func(h *handler.Handler) common.TopicEventHandler { return h.HandleDeadLetter },
	} {
		t.Run(name, func(t *testing.T) {
			f := handlertest.New(handler.Faults{})
			var seen []handler.Delivery
			f.H.Observe = func(d handler.Delivery) { seen = append(seen, d) }
			f.Mem.Fail = func(string, string) error { panic("boom") }
			e := &common.TopicEvent{ID: "p-1", Topic: "t", RawData: []byte(`{"id":"order-1","data":{"id":1,"message":"m"}}`)}
			if name == "orders" {
				e.RawData = []byte(`{"id":1,"message":"m"}`)
			}
			retry, err := handle(f.H)(t.Context(), e)
			if !retry || err == nil || !strings.Contains(err.Error(), "panic: boom") {
				t.Fatalf("panic: retry=%v err=%v, want RETRY", retry, err)
			}
			if n := f.H.Stats.Retried.Load(); n != 1 {
				t.Errorf("Stats.Retried = %d, want 1", n)
			}
			if len(seen) != 1 || seen[0].Outcome != handler.OutcomeRetry || !strings.Contains(seen[0].Reason, "boom") || seen[0].Duration <= 0 {
				t.Errorf("observed %+v, want one retry with the panic as its reason", seen)
			}
			if !strings.Contains(f.Logs.String(), "Recovered from a panic") || !strings.Contains(f.Logs.String(), "event_id=p-1") {
				t.Errorf("panic not logged with the event id: %s", f.Logs)
			}
			if got := counterValue(t, f.H.Metrics, "orders_deliveries_total", handler.OutcomeRetry); got != 1 {
				t.Errorf("orders_deliveries_total{outcome=retry} = %v, want 1", got)
			}
		})
	}
}

// counterValue reads a labelled counter from m's registry.
func counterValue(t *testing.T, m *handler.Metrics, name, outcome string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return c.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestNoRecordAppliesWithoutTheRecord: the benchmark's calibration writes
// no record, so a second delivery is applied again — what the record
// prevents, and what it costs, priced by difference.
func TestNoRecordAppliesWithoutTheRecord(t *testing.T) {
	f := handlertest.New(handler.Faults{NoRecord: true})
	for range 2 {
		e := common.TopicEvent{ID: "order-9", RawData: []byte(`{"id":9,"message":"m"}`)}
		if retry, err := f.H.HandleOrder(t.Context(), &e); retry || err != nil {
			t.Fatalf("delivery answered retry=%v err=%v, want SUCCESS", retry, err)
		}
	}
	if got := strings.Count(f.Out.String(), "Received message"); got != 2 {
		t.Fatalf("effect applied %d times, want 2 (no record, no dedupe)", got)
	}
	if v := f.Mem.Version("subscriber/order/9"); v != 0 {
		t.Fatalf("record written %d times, want none", v)
	}
}
