package publisher

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/testutil"
)

func outboxConfig() Config {
	c := testConfig()
	c.Outbox, c.OrderStore = true, "orderstore"
	return c
}

// outboxRun publishes cfg's orders in the outbox mode against st.
func outboxRun(t *testing.T, cfg Config, st *testutil.OrderStore) (int, error) {
	t.Helper()
	p := &Publisher{Client: &fakeClient{}, Store: st, Config: cfg, Log: quiet}
	return p.publish(t.Context(), generated(cfg))
}

func TestOutboxStoresEachOrderAndItsEventTogether(t *testing.T) {
	st := &testutil.OrderStore{}
	sent, err := outboxRun(t, outboxConfig(), st)
	if err != nil || sent != 3 {
		t.Fatalf("sent %d, %v; want 3", sent, err)
	}
	if st.Writes != 3 || len(st.Events) != 3 {
		t.Fatalf("%d writes, %d events; want 3 and 3", st.Writes, len(st.Events))
	}
	for i, id := range []int64{5, 6, 7} {
		stored := st.Data[OrderKey(id)]
		o, err := order.Decode(stored)
		if err != nil || o.ID != id || o.Message != order.New(id).Message || o.SentAt.IsZero() {
			t.Errorf("orders/%d = %s (%v)", id, stored, err)
		}
		if !bytes.Equal(st.Events[i], stored) || !json.Valid(st.Events[i]) {
			t.Errorf("event %d = %s, want the stored order %s", i, st.Events[i], stored)
		}
	}
}

func TestOutboxRetriesAFailedTransaction(t *testing.T) {
	st := &testutil.OrderStore{Failures: 2} // the first read and the first transaction
	if sent, err := outboxRun(t, outboxConfig(), st); err != nil || sent != 3 {
		t.Fatalf("sent %d, %v", sent, err)
	}
	if st.Writes != 3 || len(st.Events) != 3 {
		t.Errorf("%d writes, %d events; want each order once", st.Writes, len(st.Events))
	}
}

// TestOutboxDoesNotWriteTwiceWhenAnAnswerIsLost: a transaction that
// committed although its call failed is found in the store, and neither
// written nor published again.
func TestOutboxDoesNotWriteTwiceWhenAnAnswerIsLost(t *testing.T) {
	st := &testutil.OrderStore{LoseAnswers: 2}
	if sent, err := outboxRun(t, outboxConfig(), st); err != nil || sent != 3 {
		t.Fatalf("sent %d, %v", sent, err)
	}
	if st.Writes != 3 || len(st.Events) != 3 {
		t.Errorf("%d writes, %d events; want 3 and 3: a lost answer made the publisher store an order twice", st.Writes, len(st.Events))
	}
}

// TestOutboxWaitsForTheStoreBeforeSendingAgain: after a lost answer the
// sidecar cannot be asked for a while (it restarts); the transaction is
// not sent again until it can, and then it is found committed.
func TestOutboxWaitsForTheStoreBeforeSendingAgain(t *testing.T) {
	st := &testutil.OrderStore{LoseAnswers: 1, DownAfterLoss: 2}
	cfg := outboxConfig()
	cfg.Attempts = 5
	if sent, err := outboxRun(t, cfg, st); err != nil || sent != 3 {
		t.Fatalf("sent %d, %v", sent, err)
	}
	if st.Writes != 3 || len(st.Events) != 3 {
		t.Errorf("%d writes, %d events; want 3 and 3: the transaction was sent again before the store could say it had committed", st.Writes, len(st.Events))
	}
}

func TestOutboxNeverReplacesAnOrder(t *testing.T) {
	same, _ := json.Marshal(order.New(5))
	other, _ := json.Marshal(order.Order{ID: 6, Message: "another"})
	st := &testutil.OrderStore{Data: map[string][]byte{OrderKey(5): same, OrderKey(6): other}}
	sent, err := outboxRun(t, outboxConfig(), st)
	// Order 5 is there already, with the same message: done, not written.
	// Order 6 is there with another message: refused, and the run stops.
	if sent != 1 || err == nil || !strings.Contains(err.Error(), "order 6 is already stored with other content") {
		t.Fatalf("sent %d, %v; want order 5 counted and order 6 refused", sent, err)
	}
	if st.Writes != 0 || len(st.Events) != 0 {
		t.Errorf("%d writes, %d events; want none", st.Writes, len(st.Events))
	}
	if !bytes.Equal(st.Data[OrderKey(6)], other) {
		t.Errorf("orders/6 was replaced: %s", st.Data[OrderKey(6)])
	}
}

func TestOutboxDoesNotRetryARefusal(t *testing.T) {
	st := &testutil.OrderStore{Failures: 100, Err: status.Error(codes.InvalidArgument, "state store orderstore is not found")}
	sent, err := outboxRun(t, outboxConfig(), st)
	if sent != 0 || err == nil || !strings.Contains(err.Error(), "is not found") {
		t.Fatalf("sent %d, %v", sent, err)
	}
	if st.Writes != 0 {
		t.Errorf("%d writes after a refusal", st.Writes)
	}
}

func TestCheckOrderStoreSaysWhatIsWrong(t *testing.T) {
	for name, tc := range map[string]struct {
		components []*dapr.MetadataRegisteredComponents
		wantErr    string
	}{
		"redis":          {components: []*dapr.MetadataRegisteredComponents{{Name: "orderstore", Type: "state.redis", Capabilities: []string{"ETAG", "TRANSACTIONAL", "TTL"}}}},
		"in-memory":      {components: []*dapr.MetadataRegisteredComponents{{Name: "orderstore", Type: "state.in-memory", Capabilities: []string{"ETAG", "TRANSACTIONAL"}}}},
		"missing":        {components: []*dapr.MetadataRegisteredComponents{{Name: "statestore", Type: "state.redis"}}, wantErr: "has no state store orderstore"},
		"not a store":    {components: []*dapr.MetadataRegisteredComponents{{Name: "orderstore", Type: "pubsub.redis"}}, wantErr: "not a state store"},
		"no transaction": {components: []*dapr.MetadataRegisteredComponents{{Name: "orderstore", Type: "state.cassandra", Capabilities: []string{"TTL"}}}, wantErr: "is not transactional"},
	} {
		t.Run(name, func(t *testing.T) {
			p := &Publisher{Store: &testutil.OrderStore{Components: tc.components, Failures: 1}, Config: outboxConfig(), Log: quiet}
			err := p.CheckOrderStore(t.Context())
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("CheckOrderStore = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestOutboxPublishesLives: with -events, each event of an order's life is
// stored over the order's last one and published once; publishing the
// lives again stores and publishes nothing (each order is at its last
// event already).
func TestOutboxPublishesLives(t *testing.T) {
	st := &testutil.OrderStore{}
	cfg := outboxConfig()
	cfg.Events = 3
	if sent, err := outboxRun(t, cfg, st); err != nil || sent != 9 {
		t.Fatalf("sent %d, %v; want 9", sent, err)
	}
	if st.Writes != 9 || len(st.Events) != 9 {
		t.Fatalf("%d writes, %d events; want 9 and 9", st.Writes, len(st.Events))
	}
	for _, id := range []int64{5, 6, 7} {
		o, err := order.Decode(st.Data[OrderKey(id)])
		if err != nil || o.Sequence() != 3 || o.Kind() != order.TypeShipped {
			t.Errorf("orders/%d = %s (%v), want its third event", id, st.Data[OrderKey(id)], err)
		}
	}
	if sent, err := outboxRun(t, cfg, st); err != nil || sent != 9 || st.Writes != 9 {
		t.Fatalf("again: sent %d, %v, %d writes; want 9 counted as published and no write", sent, err, st.Writes)
	}
}
