package bench

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram bounds, in microseconds.
const (
	minLatencyMicros = 1
	maxLatencyMicros = 60_000_000 // 60 s; longer latencies count as 60 s
)

// Recorder records, for messages with ids 0..n-1, when each was sent and when
// it was first delivered, and counts duplicates. All its methods are safe for
// concurrent use; Sent and Deliver are a few atomic operations, cheap enough
// for a consumer's hot path. Times are compared as wall-clock times, so a
// delivery time may come from another process on the same machine.
type Recorder struct {
	sent      []atomic.Int64 // UnixNano of the stamp; 0 = not sent
	delivered []atomic.Int64 // UnixNano of the first delivery; 0 = not delivered
	count     []atomic.Int32 // deliveries per id

	nSent      atomic.Int64
	nDelivered atomic.Int64 // distinct ids delivered
	nDup       atomic.Int64 // deliveries beyond the first
	nUnknown   atomic.Int64 // deliveries of ids outside 0..n-1
	nFailed    atomic.Int64 // messages whose send failed

	mu       sync.Mutex
	firstErr string // the first send error, for the report
}

// NewRecorder returns a Recorder for messages 0..n-1.
func NewRecorder(n int) *Recorder {
	return &Recorder{
		sent:      make([]atomic.Int64, n),
		delivered: make([]atomic.Int64, n),
		count:     make([]atomic.Int32, n),
	}
}

// Sent records that message id was sent, with latency measured from at.
func (r *Recorder) Sent(id int64, at time.Time) {
	if id < 0 || id >= int64(len(r.sent)) {
		return
	}
	if r.sent[id].Swap(at.UnixNano()) == 0 {
		r.nSent.Add(1)
	}
}

// Failed records that n messages could not be sent because of err.
func (r *Recorder) Failed(n int, err error) {
	r.nFailed.Add(int64(n))
	r.mu.Lock()
	if r.firstErr == "" && err != nil {
		r.firstErr = err.Error()
	}
	r.mu.Unlock()
}

// Deliver records a delivery of message id at time at. A second delivery of
// the same id counts as a duplicate; an id out of range counts as unknown.
// It may be called while messages are flowing or afterwards, e.g. from
// records read back from a store.
func (r *Recorder) Deliver(id int64, at time.Time) {
	if id < 0 || id >= int64(len(r.count)) {
		r.nUnknown.Add(1)
		return
	}
	if r.count[id].Add(1) > 1 {
		r.nDup.Add(1)
		return
	}
	r.delivered[id].Store(at.UnixNano())
	r.nDelivered.Add(1)
}

// Delivered returns how many distinct messages have been delivered so far.
func (r *Recorder) Delivered() int64 { return r.nDelivered.Load() }

// Wait returns when every message recorded as Sent has been delivered, or
// when no new delivery arrived for idle (the rest are lost), or with ctx's
// error. Call it after Generate returned, so that the sent count is final.
func (r *Recorder) Wait(ctx context.Context, idle time.Duration) error {
	const poll = 10 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	last, lastChange := r.nDelivered.Load(), time.Now()
	for {
		if r.allDelivered() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if d := r.nDelivered.Load(); d != last {
				last, lastChange = d, now
			} else if now.Sub(lastChange) >= idle {
				return nil
			}
		}
	}
}

// allDelivered reports whether every sent message has been delivered. A
// delivery of a message whose send reported an error counts too, so the
// cheap count comparison may be ≥.
func (r *Recorder) allDelivered() bool {
	return r.nDelivered.Load() >= r.nSent.Load()
}

// Result summarises what was recorded: counts, throughput and latency.
// Process CPU, load and scenario fields are left for the caller.
func (r *Recorder) Result() Result {
	h := hdrhistogram.New(minLatencyMicros, maxLatencyMicros, 3)
	res := Result{
		Messages:   len(r.sent),
		Sent:       int(r.nSent.Load()),
		SendFailed: int(r.nFailed.Load()),
		Delivered:  int(r.nDelivered.Load()),
		Dup:        int(r.nDup.Load()),
		Unknown:    int(r.nUnknown.Load()),
	}
	r.mu.Lock()
	res.SendError = r.firstErr
	r.mu.Unlock()
	firstSent, lastDelivered := int64(math.MaxInt64), int64(0)
	for i := range r.sent {
		s, d := r.sent[i].Load(), r.delivered[i].Load()
		if s != 0 {
			firstSent = min(firstSent, s)
			if d == 0 {
				res.Lost++
			}
		}
		if d != 0 {
			lastDelivered = max(lastDelivered, d)
		}
		if s == 0 || d == 0 {
			continue
		}
		us := (d - s) / int64(time.Microsecond)
		_ = h.RecordValue(min(max(us, minLatencyMicros), maxLatencyMicros))
	}
	if res.Delivered > 0 && firstSent != math.MaxInt64 && lastDelivered > firstSent {
		span := time.Duration(lastDelivered - firstSent)
		res.Seconds = span.Seconds()
		res.Throughput = float64(res.Delivered) / span.Seconds()
	}
	if h.TotalCount() > 0 {
		ms := func(us int64) float64 { return float64(us) / 1000 }
		res.Latency = Latency{
			P50:  ms(h.ValueAtQuantile(50)),
			P90:  ms(h.ValueAtQuantile(90)),
			P99:  ms(h.ValueAtQuantile(99)),
			P999: ms(h.ValueAtQuantile(99.9)),
			Max:  ms(h.Max()),
			Mean: h.Mean() / 1000,
		}
	}
	return res
}
