package bench

import (
	"context"
	"sync"
	"time"
)

// Outgoing is one message a SendFunc must send.
type Outgoing struct {
	ID int64
	// Stamp is the time latency is measured from: the intended send time
	// in rate mode (even if the generator is late), the moment just before
	// the send in throughput mode. Put it in the payload's sent_at.
	Stamp time.Time
}

// SendFunc sends a batch of messages (one message unless Load.Batch > 1).
// It is called from Load.Senders goroutines at once and must be safe for
// that. An error means none of the batch was sent; the generator counts the
// batch as failed and goes on.
type SendFunc func(ctx context.Context, batch []Outgoing) error

// Load is an open-loop load: Messages messages, message i intended to be sent
// at start + i/Rate whatever happened before it, so that a stalled system
// shows as latency (no coordinated omission). With Rate 0 messages are sent
// as fast as the senders can.
type Load struct {
	Messages int
	Rate     float64 // messages per second; 0 = as fast as possible
	Senders  int     // goroutines sending at once; default 1
	// Batch is the most messages per SendFunc call (default 1). In rate
	// mode a sender takes the next message when it is due, plus the ones
	// after it that are already due, up to Batch: batches form only when
	// the senders fall behind or the rate outruns one sender, so batching
	// never delays a message on purpose.
	Batch int
}

// Due returns when message i is intended to be sent, for a load started at
// start; with Rate 0 it returns start.
func (l Load) Due(start time.Time, i int) time.Time {
	if l.Rate <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
}

// LoadStats describes how the generator kept up.
type LoadStats struct {
	Start   time.Time     // the schedule's origin
	Elapsed time.Duration // from Start until the last send returned
	// MaxLag is the longest a message waited past its due time before a
	// sender took it: a large lag means the senders, not the system,
	// could not keep up with the rate (or the system blocked them).
	MaxLag time.Duration
}

// Generate runs load l: it calls send for every message and records each
// successfully sent message in rec (Recorder.Sent) with its stamp, and each
// failed one with Recorder.Failed. It returns when every message has been
// handed to send, or with ctx's error if ctx ends first.
func Generate(ctx context.Context, l Load, rec *Recorder, send SendFunc) (LoadStats, error) {
	if l.Senders < 1 {
		l.Senders = 1
	}
	if l.Batch < 1 {
		l.Batch = 1
	}
	d := &dispatcher{load: l, start: time.Now()}
	var wg sync.WaitGroup
	for range l.Senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]Outgoing, 0, l.Batch)
			for {
				first, n, ok := d.claim(ctx)
				if !ok {
					return
				}
				batch = batch[:0]
				var now time.Time
				if l.Rate <= 0 {
					now = time.Now()
				}
				for i := first; i < first+n; i++ {
					stamp := now
					if l.Rate > 0 {
						stamp = l.Due(d.start, i)
					}
					batch = append(batch, Outgoing{ID: int64(i), Stamp: stamp})
				}
				if err := send(ctx, batch); err != nil {
					if ctx.Err() != nil {
						return
					}
					rec.Failed(len(batch), err)
					continue
				}
				for _, m := range batch {
					rec.Sent(m.ID, m.Stamp)
				}
			}
		}()
	}
	wg.Wait()
	stats := LoadStats{Start: d.start, Elapsed: time.Since(d.start), MaxLag: d.maxLag}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	return stats, nil
}

// dispatcher hands out message ids in order. One sender at a time waits in
// claim for the next message to fall due; the others queue on the mutex.
type dispatcher struct {
	load  Load
	start time.Time

	mu     sync.Mutex
	next   int
	maxLag time.Duration
}

// claim returns the next n ids from first, once the first is due; ok is
// false when all are claimed or ctx ended.
func (d *dispatcher) claim(ctx context.Context) (first, n int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next >= d.load.Messages || ctx.Err() != nil {
		return 0, 0, false
	}
	first = d.next
	last := min(first+d.load.Batch, d.load.Messages) // exclusive
	if d.load.Rate > 0 {
		due := d.load.Due(d.start, first)
		if wait := time.Until(due); wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				return 0, 0, false
			}
		}
		now := time.Now()
		d.maxLag = max(d.maxLag, now.Sub(due))
		// Only what is already due joins the batch.
		n := 1
		for first+n < last && !d.load.Due(d.start, first+n).After(now) {
			n++
		}
		last = first + n
	}
	d.next = last
	return first, last - first, true
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
