package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
)

// Batching of the record writes (WithBatching): group commit. Concurrent
// MarkProcessed calls queue; up to `flushers` goroutines each take what is
// queued (at most `max`) and write it in one SaveState call of many items,
// so a batch of N orders costs one app→sidecar call instead of N. Nothing
// waits for a batch to fill: a lone call goes out at once, alone, as
// without batching; batches form only while earlier ones are in flight.
//
// The guarantee is the single write's: each item is written with
// first-write concurrency and no ETag. daprd hands a many-item SaveState to
// the store's BulkSet, which for Dapr's Redis and in-memory stores
// (components-contrib state.DefaultBulkStore, state/bulk.go) is one Set per
// item, each honouring first-write, and for the record store
// (internal/recordstore) one Redis script inserting every absent item and
// refusing the present ones. When the call fails, one
// bulk read tells each item's fate, as insert's single read does: present
// with this write's bytes (they carry its attempt token) → written;
// present with other bytes → a duplicate; absent → failed, retry.
type batcher struct {
	s             *Store
	max, flushers int

	mu     sync.Mutex
	queue  []*insertCall
	active int // flushers running
}

// insertCall is one queued insert and where its answer goes.
type insertCall struct {
	key   string
	value []byte
	life  time.Duration
	ctx   context.Context
	done  chan insertResult // buffered: the flusher never waits
}

type insertResult struct {
	first bool
	err   error
}

// WithBatching makes MarkProcessed write records in batches of up to size,
// with up to flushers batches in flight (see batcher); max ≤ 1 turns it
// off. It returns s. Only for a state store whose bulk save applies
// first-write per item (Redis, in-memory).
func (s *Store) WithBatching(size, flushers int) *Store {
	if size > 1 {
		s.batch = &batcher{s: s, max: size, flushers: max(flushers, 1)}
	}
	return s
}

// insert queues the write and waits for its answer, or for ctx.
func (b *batcher) insert(ctx context.Context, key string, value []byte, life time.Duration) (bool, error) {
	c := &insertCall{key: key, value: value, life: life, ctx: ctx, done: make(chan insertResult, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if b.active < b.flushers {
		b.active++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case r := <-c.done:
		return r.first, r.err
	case <-ctx.Done():
		// The write may still land: the caller treats this like any
		// failed call (the record's attempt token tells later).
		return false, ctx.Err()
	}
}

// run flushes what is queued until the queue is empty, then ends.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.active--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.max)
		calls := make([]*insertCall, n)
		copy(calls, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		b.flush(calls)
	}
}

// flush writes calls and answers each.
func (b *batcher) flush(calls []*insertCall) {
	if len(calls) == 1 {
		c := calls[0]
		first, err := b.s.insertOne(c.ctx, b.s.records, c.key, c.value, c.life)
		c.done <- insertResult{first, err}
		return
	}
	// The batch's calls have their own deadlines; it runs until the
	// latest of them, and no caller's cancellation stops the others'.
	ctx, cancel := batchContext(calls)
	defer cancel()
	items := make([]*dapr.SetStateItem, len(calls))
	for i, c := range calls {
		items[i] = &dapr.SetStateItem{Key: c.key, Value: c.value, Metadata: ttl(c.life),
			Options: &dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite}}
	}
	err := b.s.client.SaveBulkState(ctx, b.s.records, items...)
	if err == nil {
		for _, c := range calls {
			c.done <- insertResult{first: true}
		}
		return
	}
	// Some or all were refused or failed: read what is there.
	keys := make([]string, len(calls))
	for i, c := range calls {
		keys[i] = c.key
	}
	got, gerr := b.s.client.GetBulkState(ctx, b.s.records, keys, nil, 0)
	if gerr != nil {
		for _, c := range calls {
			c.done <- insertResult{err: fmt.Errorf("save %d records in state store %s: %w (and reading them back: %w)", len(calls), b.s.records, err, gerr)}
		}
		return
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(got))
	for _, it := range got {
		byKey[it.Key] = it
	}
	for _, c := range calls {
		switch it := byKey[c.key]; {
		case it != nil && it.Error == "" && len(it.Value) > 0:
			c.done <- insertResult{first: bytes.Equal(it.Value, c.value)}
		default:
			c.done <- insertResult{err: fmt.Errorf("save %s in state store %s: %w", c.key, b.s.records, err)}
		}
	}
}

// batchContext is a context that ends at the latest deadline of calls (or
// in a minute if one has none), whatever happens to their contexts.
func batchContext(calls []*insertCall) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range calls {
		d, ok := c.ctx.Deadline()
		if !ok {
			d = time.Now().Add(time.Minute)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(calls[0].ctx), latest)
}

// queued is how many calls wait for a flusher (for tests).
func (b *batcher) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
