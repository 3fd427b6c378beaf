package handler_test

import (
	"strings"
	"testing"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

// TestOrderedModeAppliesALifeInSequence: events of one order delivered
// out of sequence are held and applied in sequence, each once; a
// forbidden transition and a conflicting duplicate are dead letters with
// their reasons, acknowledged (never retried, never lost).
func TestOrderedModeAppliesALifeInSequence(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	f.H.Lives = f.St.Lives(10, "pubsub", "orders")
	deliver := func(id, data string) {
		t.Helper()
		if retry, err := f.H.HandleOrder(t.Context(), &common.TopicEvent{ID: id, RawData: []byte(data)}); retry || err != nil {
			t.Fatalf("%s: retry %v, err %v; want SUCCESS", id, retry, err)
		}
	}
	deliver("order-5-3", `{"id":5,"message":"m","seq":3,"type":"order.shipped"}`)
	deliver("order-5-2", `{"id":5,"message":"m","seq":2,"type":"order.paid"}`)
	if f.Out.String() != "" || f.H.Stats.Held.Load() != 2 {
		t.Fatalf("events 3 and 2 before 1: printed %q, held %d", f.Out, f.H.Stats.Held.Load())
	}
	deliver("order-5", `{"id":5,"message":"m"}`)
	deliver("order-5-3", `{"id":5,"message":"m","seq":3,"type":"order.shipped"}`) // a redelivery
	want := `Received message: {"id": 5, "message": "m"}
Received message: {"id": 5, "message": "m", "seq": 2, "type": "order.paid"}
Received message: {"id": 5, "message": "m", "seq": 3, "type": "order.shipped"}
`
	if f.Out.String() != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", f.Out, want)
	}
	deliver("order-5-4", `{"id":5,"message":"m","seq":4,"type":"order.cancelled"}`)
	deliver("order-5-3", `{"id":5,"message":"changed","seq":3,"type":"order.shipped"}`)
	dls, err := f.St.DeadLetters(t.Context())
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	if dls[0].Reason != "order 5: event 4: order.cancelled is not allowed after order.shipped" ||
		!strings.Contains(dls[1].Reason, "conflicting duplicate of order 5 event 3 (order.shipped): message differs") {
		t.Errorf("reasons: %q, %q", dls[0].Reason, dls[1].Reason)
	}
	if got := handlertest.StatsJSON(&f.H.Stats); !strings.Contains(got, `"processed":3`) || !strings.Contains(got, `"late":3`) || !strings.Contains(got, `"duplicates":1`) {
		t.Errorf("stats: %s", got)
	}
}

// TestRouteByTypeSubscriptions: the ordered mode's rules — one route per
// event type after the first, each of its own priority, guarded so that
// data that is no JSON object takes the default route; the dead-letter
// topic on every orders subscription.
func TestRouteByTypeSubscriptions(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	subs := f.H.Subscriptions(handler.Topics{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter", RouteByType: true})
	if len(subs) != 2+len(handler.TypeRoutes) {
		t.Fatalf("%d subscriptions", len(subs))
	}
	seen := map[int]bool{}
	for i, r := range handler.TypeRoutes {
		s := subs[1+i].Sub
		if s.Topic != "orders" || s.Route != r.Path || s.Priority < 1 || seen[s.Priority] || s.DeadLetterTopic != "orders-deadletter" ||
			!strings.Contains(s.Match, `event.data.type == "`+r.Type+`"`) || !strings.HasPrefix(s.Match, `has(event.data) && type(event.data) == map && "type" in event.data`) {
			t.Errorf("rule %d: %+v", i, s)
		}
		seen[s.Priority] = true
	}
	if plain := f.H.Subscriptions(handler.Topics{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter"}); len(plain) != 2 || plain[0].Sub.Match != "" {
		t.Errorf("without RouteByType: %d subscriptions", len(plain))
	}
}
