package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store/storetest"
)

func TestMarkProcessedIsOnce(t *testing.T) {
	for _, redisStyle := range []bool{false, true} {
		t.Run(map[bool]string{false: "aborted", true: "redis"}[redisStyle], func(t *testing.T) {
			markProcessedIsOnce(t, &storetest.Mem{RedisStyle: redisStyle})
		})
	}
}

func markProcessedIsOnce(t *testing.T, mem *storetest.Mem) {
	s := New(mem, "statestore", "subscriber")
	var wg sync.WaitGroup
	firsts := make(chan bool, 20)
	for range 20 { // concurrent redeliveries of one order
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := s.MarkProcessed(t.Context(), order.New(5), "order-5", "")
			if err != nil {
				t.Error(err)
			}
			firsts <- first
		}()
	}
	wg.Wait()
	close(firsts)
	n := 0
	for f := range firsts {
		if f {
			n++
		}
	}
	if n != 1 || mem.Version(s.ProcessedKey(5)) != 1 {
		t.Fatalf("%d calls wrote the record (version %d), want exactly 1", n, mem.Version(s.ProcessedKey(5)))
	}
}

func TestMarkProcessedReportsAnUnreachableStore(t *testing.T) {
	mem := &storetest.Mem{Fail: func(string, string) error { return storetest.ErrUnavailable }}
	first, err := New(mem, "statestore", "subscriber").MarkProcessed(t.Context(), order.New(1), "e", "")
	if first || !errors.Is(err, storetest.ErrUnavailable) {
		t.Fatalf("MarkProcessed = %v, %v; want false and the store's error", first, err)
	}
}

func TestDeadLettersAreKeptOnceListedAndRemoved(t *testing.T) {
	for _, redisStyle := range []bool{false, true} {
		t.Run(map[bool]string{false: "aborted", true: "redis"}[redisStyle], func(t *testing.T) {
			deadLettersAreKeptOnce(t, &storetest.Mem{RedisStyle: redisStyle})
		})
	}
}

func deadLettersAreKeptOnce(t *testing.T, mem *storetest.Mem) {
	s := New(mem, "statestore", "subscriber")
	var wg sync.WaitGroup
	for i := range 10 {
		for range 2 { // each dead letter delivered twice, concurrently
			wg.Add(1)
			go func() {
				defer wg.Done()
				dl := DeadLetter{EventID: fmt.Sprintf("e%d", i), Topic: "orders", Data: []byte(`{"id":-1}`), Reason: "bad"}
				if _, err := s.AddDeadLetter(t.Context(), dl); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	list, err := s.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 10 {
		t.Fatalf("listed %d dead letters, want 10: %+v", len(list), list)
	}
	if err := s.RemoveDeadLetter(t.Context(), "e3"); err != nil {
		t.Fatal(err)
	}
	list, err = s.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 9 {
		t.Fatalf("after removing one, listed %d, want 9", len(list))
	}
	for _, dl := range list {
		if dl.EventID == "e3" {
			t.Fatal("removed dead letter still listed")
		}
		if string(dl.Data) != `{"id":-1}` || dl.Reason != "bad" {
			t.Fatalf("dead letter changed on the way: %+v", dl)
		}
	}
}

func TestKeysAreNamespacedByApp(t *testing.T) {
	a, b := New(nil, "s", "subscriber"), New(nil, "s", "audit")
	if a.ProcessedKey(1) == b.ProcessedKey(1) {
		t.Fatal("two consumer apps share processed keys; fan-out would see each other's orders as duplicates")
	}
}

// TestRecordsLiveTheRetentionWindow: a processed order's record lives the
// window plus the margin, a refused duplicate leaves its TTL as it was, a
// dead letter lives its own retention, and an expired dead letter leaves
// the list and the index.
func TestRecordsLiveTheRetentionWindow(t *testing.T) {
	mem := &storetest.Mem{RedisStyle: true}
	s := New(mem, "statestore", "sub").WithRetention(24*time.Hour, 30*24*time.Hour)
	ctx := t.Context()
	o := order.Order{ID: 7, Message: "m"}
	if first, err := s.MarkProcessed(ctx, o, "order-7", ""); !first || err != nil {
		t.Fatalf("MarkProcessed = %v, %v", first, err)
	}
	if first, err := s.MarkProcessed(ctx, o, "order-7", ""); first || err != nil {
		t.Fatalf("duplicate MarkProcessed = %v, %v", first, err)
	}
	if got := mem.TTL(s.ProcessedKey(7)); got != "90000" {
		t.Errorf("record TTL = %q s, want 90000 (24 h + 1 h)", got)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := s.AddDeadLetter(ctx, DeadLetter{EventID: id, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := mem.TTL("sub/deadletter/a"); got != "2592000" {
		t.Errorf("dead letter TTL = %q s, want 2592000 (30 days)", got)
	}
	mem.Expire("sub/deadletter/a")
	dls, err := s.DeadLetters(ctx)
	if err != nil || len(dls) != 1 || dls[0].EventID != "b" {
		t.Fatalf("DeadLetters after one expired = %+v, %v; want only b", dls, err)
	}
	it, _ := mem.GetState(ctx, "statestore", "sub/deadletters", nil)
	if string(it.Value) != `["b"]` {
		t.Errorf("index after the expiry = %s, want [\"b\"]", it.Value)
	}
	if ttl := mem.TTL("sub/deadletters"); ttl != "" {
		t.Errorf("the index got a TTL %q; it must live as long as any dead letter", ttl)
	}
}

// TestShortWindowsGetAMinuteOfMargin: a 2-minute window (the long soak's)
// keeps records 3 minutes; 0 keeps them for good.
func TestShortWindowsGetAMinuteOfMargin(t *testing.T) {
	for window, want := range map[time.Duration]string{2 * time.Minute: "180", 0: ""} {
		mem := &storetest.Mem{}
		s := New(mem, "statestore", "sub").WithRetention(window, 0)
		if _, err := s.MarkProcessed(t.Context(), order.Order{ID: 1, Message: "m"}, "order-1", ""); err != nil {
			t.Fatal(err)
		}
		if got := mem.TTL(s.ProcessedKey(1)); got != want {
			t.Errorf("window %s: record TTL %q, want %q", window, got, want)
		}
	}
}

// storeNames is a StateClient that notes which state store each save and
// read of a key went to.
type storeNames struct {
	*storetest.Mem
	mu    sync.Mutex
	saves map[string]string // key → store
	pings []string
}

func (c *storeNames) note(store, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if key == "subscriber/ping" {
		c.pings = append(c.pings, store)
		return
	}
	c.saves[key] = store
}

func (c *storeNames) SaveStateWithETag(ctx context.Context, store, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	c.note(store, key)
	return c.Mem.SaveStateWithETag(ctx, store, key, data, etag, meta, so...)
}

func (c *storeNames) SaveBulkState(ctx context.Context, store string, items ...*dapr.SetStateItem) error {
	for _, it := range items {
		c.note(store, it.Key)
	}
	return c.Mem.SaveBulkState(ctx, store, items...)
}

func (c *storeNames) GetState(ctx context.Context, store, key string, meta map[string]string) (*dapr.StateItem, error) {
	if key == "subscriber/ping" {
		c.note(store, key)
	}
	return c.Mem.GetState(ctx, store, key, meta)
}

// WithRecordStore sends the processed-order records, and only them, to
// the record store, alone and in batches; Ping checks both stores.
func TestRecordStoreTakesTheRecordsOnly(t *testing.T) {
	for _, batch := range []int{1, 100} {
		c := &storeNames{Mem: &storetest.Mem{}, saves: map[string]string{}}
		s := New(c, "statestore", "subscriber").WithRecordStore("records").WithBatching(batch, 4)
		ctx := t.Context()
		var wg sync.WaitGroup
		for id := range int64(20) {
			wg.Go(func() {
				if _, err := s.MarkProcessed(ctx, order.New(id), fmt.Sprintf("order-%d", id), ""); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if _, err := s.AddDeadLetter(ctx, DeadLetter{EventID: "bad-1", Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		for key, store := range c.saves {
			want := "statestore"
			if strings.Contains(key, "/order/") {
				want = "records"
			}
			if store != want {
				t.Errorf("batch %d: %s saved in %s, want %s", batch, key, store, want)
			}
		}
		if len(c.saves) != 20+2 { // 20 records, a dead letter and its index
			t.Errorf("batch %d: %d keys saved, want 22: %v", batch, len(c.saves), c.saves)
		}
		if strings.Join(c.pings, ",") != "statestore,records" {
			t.Errorf("batch %d: pinged %v, want both stores", batch, c.pings)
		}
		if rec, found, err := s.ProcessedRecord(ctx, 7); err != nil || !found || rec.Order.ID != 7 {
			t.Errorf("batch %d: record 7 = %+v %v %v", batch, rec, found, err)
		}
	}
}
