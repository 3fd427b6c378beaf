package deadletters

import (
	"strings"
	"testing"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/testutil"
)

func seeded(t *testing.T) *store.Store {
	st := store.New(&storetest.Mem{}, "statestore", "subscriber")
	for _, dl := range []store.DeadLetter{
		{EventID: "order-1", PubSub: "pubsub", Topic: "orders", ContentType: "application/json", Data: []byte(`{"id":1,"message":"m"}`), Reason: "bug"},
		{EventID: "order-2", PubSub: "pubsub", Topic: "orders", ContentType: "application/json", Data: []byte(`{"id":2,"message":"m"}`), Reason: "bug"},
	} {
		if _, err := st.AddDeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestReplayByIDPublishesTheOriginalAndForgetsIt(t *testing.T) {
	st, pub := seeded(t), &testutil.Publisher{}
	var out strings.Builder
	done, err := Replay(t.Context(), st, pub, []string{"order-2"}, &out)
	if err != nil || len(done) != 1 || done[0] != "order-2" {
		t.Fatalf("Replay = %v, %v", done, err)
	}
	req := pub.Got[0]
	if req.Topic != "orders" || string(req.Data) != `{"id":2,"message":"m"}` || req.DataContentType != "application/json" ||
		!strings.HasPrefix(req.Metadata[order.CloudEventIDKey], "order-2+replay-") {
		t.Fatalf("published %+v", req)
	}
	left, _ := st.DeadLetters(t.Context())
	if len(left) != 1 || left[0].EventID != "order-1" {
		t.Fatalf("left %+v, want only order-1", left)
	}
}

func TestReplayAllAndUnknownID(t *testing.T) {
	st, pub := seeded(t), &testutil.Publisher{}
	if done, err := Replay(t.Context(), st, pub, nil, &strings.Builder{}); err != nil || len(done) != 2 {
		t.Fatalf("replay all = %v, %v", done, err)
	}
	if _, err := Replay(t.Context(), st, pub, []string{"nope"}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "no dead letter") {
		t.Fatalf("unknown id = %v", err)
	}
}

func TestReplayFailureKeepsTheDeadLetter(t *testing.T) {
	st := seeded(t)
	if _, err := Replay(t.Context(), st, &testutil.Publisher{Failures: 1 << 30}, nil, &strings.Builder{}); err == nil {
		t.Fatal("replay with the sidecar down reported success")
	}
	if left, _ := st.DeadLetters(t.Context()); len(left) != 2 {
		t.Fatalf("a failed replay lost dead letters: %d left", len(left))
	}
}

func TestList(t *testing.T) {
	var out strings.Builder
	if err := List(t.Context(), seeded(t), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "order-1") || !strings.Contains(out.String(), "2 dead letter(s)") {
		t.Fatalf("list = %s", out.String())
	}
}
