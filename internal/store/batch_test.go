package store

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store/storetest"
)

// countingClient counts the saves that reach the store, and holds the
// first until release is closed, so that calls queue behind it.
type countingClient struct {
	*storetest.Mem
	calls, items atomic.Int64
	firstItems   atomic.Int64  // items of the first save
	release      chan struct{} // nil: no holding
}

func (c *countingClient) saved(n int) {
	if c.calls.Add(1) == 1 && c.release != nil {
		c.firstItems.Store(int64(n))
		<-c.release
	}
	c.items.Add(int64(n))
}

func (c *countingClient) SaveStateWithETag(ctx context.Context, name, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	c.saved(1)
	return c.Mem.SaveStateWithETag(ctx, name, key, data, etag, meta, so...)
}

func (c *countingClient) SaveBulkState(ctx context.Context, name string, items ...*dapr.SetStateItem) error {
	c.saved(len(items))
	return c.Mem.SaveBulkState(ctx, name, items...)
}

// markAll calls MarkProcessed for each id at once, each with its own
// attempt token, and returns how many calls wrote their record.
func markAll(t *testing.T, s *Store, ids []int64) (firsts int, errs []error) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			first, err := s.MarkProcessed(t.Context(), order.New(id), "order-"+strconv.FormatInt(id, 10), "attempt-"+strconv.Itoa(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if first {
				firsts++
			}
		})
	}
	wg.Wait()
	return firsts, errs
}

// TestBatchedRecordsAreWrittenTogetherOnce: calls that queue behind one in
// flight go out together in one bulk save; every order's record is
// written once.
func TestBatchedRecordsAreWrittenTogetherOnce(t *testing.T) {
	c := &countingClient{Mem: &storetest.Mem{RedisStyle: true}, release: make(chan struct{})}
	s := New(c, "statestore", "subscriber").WithBatching(100, 1)
	ids := make([]int64, 50)
	for i := range ids {
		ids[i] = int64(i)
	}
	go func() {
		// The one flusher is held in its first save until the rest queued.
		for c.firstItems.Load() == 0 || int64(s.batch.queued())+c.firstItems.Load() < 50 {
			time.Sleep(time.Millisecond)
		}
		close(c.release)
	}()
	firsts, errs := markAll(t, s, ids)
	if len(errs) > 0 || firsts != 50 || c.Keys() != 50 {
		t.Fatalf("%d written, %d keys, errors %v; want all 50 once", firsts, c.Keys(), errs)
	}
	if c.calls.Load() != 2 || c.items.Load() != 50 {
		t.Errorf("%d saves of %d items; want 2: the first call(s), then all that queued behind them", c.calls.Load(), c.items.Load())
	}
}

// TestBatchedDuplicatesAreTold: deliveries of the same orders at once, in
// the same batches, write each record once; the others are duplicates —
// with the store refusing as Redis does (a plain error) or with Aborted.
func TestBatchedDuplicatesAreTold(t *testing.T) {
	for _, redisStyle := range []bool{false, true} {
		t.Run(map[bool]string{false: "aborted", true: "redis"}[redisStyle], func(t *testing.T) {
			mem := &storetest.Mem{RedisStyle: redisStyle}
			s := New(mem, "statestore", "subscriber").WithBatching(100, 2)
			var ids []int64
			for range 10 {
				for id := range int64(5) {
					ids = append(ids, id)
				}
			}
			firsts, errs := markAll(t, s, ids)
			if len(errs) > 0 || firsts != 5 || mem.Keys() != 5 {
				t.Fatalf("%d written of 50 deliveries of 5 orders, %d keys, errors %v; want 5", firsts, mem.Keys(), errs)
			}
			for id := range int64(5) {
				if v := mem.Version(s.ProcessedKey(id)); v != 1 {
					t.Errorf("order %d's record written %d times", id, v)
				}
			}
		})
	}
}

// TestBatchedWritesThatLandedDespiteTheirErrorAreWritten: the bulk call
// fails after the store applied it; the read-back finds each call's own
// bytes, so each is written, not taken for a duplicate.
func TestBatchedWritesThatLandedDespiteTheirErrorAreWritten(t *testing.T) {
	mem := &storetest.Mem{RedisStyle: true, FailAfterSave: func(string) error { return storetest.ErrUnavailable }}
	s := New(mem, "statestore", "subscriber").WithBatching(100, 1)
	firsts, errs := markAll(t, s, []int64{1, 2, 3, 4, 5, 6, 7, 8})
	if len(errs) > 0 || firsts != 8 {
		t.Fatalf("%d written, errors %v; want all 8 (their writes landed)", firsts, errs)
	}
}

// TestBatchedWritesToAStoreThatIsDownFail: every call of the batch gets
// the error, so every order is retried.
func TestBatchedWritesToAStoreThatIsDownFail(t *testing.T) {
	mem := &storetest.Mem{Fail: func(string, string) error { return storetest.ErrUnavailable }}
	s := New(mem, "statestore", "subscriber").WithBatching(100, 1)
	firsts, errs := markAll(t, s, []int64{1, 2, 3, 4, 5, 6, 7, 8})
	if firsts != 0 || len(errs) != 8 {
		t.Fatalf("%d written, %d errors; want none written, 8 errors", firsts, len(errs))
	}
	for _, err := range errs {
		if !strings.Contains(err.Error(), storetest.ErrUnavailable.Error()) {
			t.Errorf("error %q does not say the store is unavailable", err)
		}
	}
}
