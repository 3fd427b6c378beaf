package live

import (
	"errors"
	"slices"
	"sync"
	"time"

	"dapr-pub-sub/internal/subscriber/handler"
)

// Feed defaults.
const (
	// DefaultFeedKeep is how many recent deliveries a new client gets.
	DefaultFeedKeep = 100
	// DefaultFeedBuffer is how many deliveries may wait for one client
	// before further ones are dropped for it.
	DefaultFeedBuffer = 256
	// RateWindow is how many seconds of throughput the feed keeps.
	RateWindow = 60
	// HeartbeatInterval is how often an idle event stream gets a comment,
	// so proxies and browsers keep it open.
	HeartbeatInterval = 15 * time.Second
)

// ErrFeedClosed is what Subscribe returns after Close.
var ErrFeedClosed = errors.New("live feed closed")

// Feed fans deliveries out to the live page's clients. Publish never
// blocks: a client that falls behind by more than its buffer misses
// deliveries (counted, and shown on its page) rather than slowing the
// handler down. Memory is bounded by the ring of recent deliveries, the
// per-second counts of the last RateWindow seconds and one buffer per
// client. It is safe for concurrent use.
type Feed struct {
	buffer int
	now    func() time.Time

	mu      sync.Mutex
	recent  []handler.Delivery // ring of the last cap(recent) deliveries
	next    int                // where the next delivery goes in recent
	subs    map[*Subscription]struct{}
	rate    [RateWindow]rateSlot
	dropped int64 // deliveries not sent to a slow client, all clients
	closed  bool
	done    chan struct{}
}

type rateSlot struct {
	sec int64 // unix second the count is for
	n   int64
}

// Subscription is one client of a Feed. C yields the deliveries published
// after Subscribe; it is never closed: stop reading when the Feed's Done
// channel closes, and call Unsubscribe.
type Subscription struct {
	C       <-chan handler.Delivery
	c       chan handler.Delivery
	dropped int64 // guarded by the Feed's mu
}

// NewFeed returns a Feed that keeps the last keep deliveries for new
// clients and buffers up to buffer deliveries per client (the defaults
// when ≤ 0).
func NewFeed(keep, buffer int) *Feed {
	if keep <= 0 {
		keep = DefaultFeedKeep
	}
	if buffer <= 0 {
		buffer = DefaultFeedBuffer
	}
	return &Feed{buffer: buffer, now: time.Now, recent: make([]handler.Delivery, 0, keep),
		subs: map[*Subscription]struct{}{}, done: make(chan struct{})}
}

// Publish records d and hands it to every client without waiting: a client
// whose buffer is full misses it. It is meant as handler.Config.Observe and
// stays safe to call after Close.
func (f *Feed) Publish(d handler.Delivery) {
	if d.Time.IsZero() {
		d.Time = f.now()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recent) < cap(f.recent) {
		f.recent = append(f.recent, d)
	} else {
		f.recent[f.next] = d
	}
	f.next = (f.next + 1) % cap(f.recent)
	sec := d.Time.Unix()
	slot := &f.rate[sec%RateWindow]
	if slot.sec != sec {
		*slot = rateSlot{sec: sec}
	}
	slot.n++
	for s := range f.subs {
		select {
		case s.c <- d:
		default:
			s.dropped++
			f.dropped++
		}
	}
}

// Subscribe registers a client and returns the recent deliveries, oldest
// first, with no gap or overlap between them and what s.C then yields. It
// returns ErrFeedClosed once the Feed is closed.
func (f *Feed) Subscribe() (recent []handler.Delivery, s *Subscription, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, ErrFeedClosed
	}
	c := make(chan handler.Delivery, f.buffer)
	s = &Subscription{C: c, c: c}
	f.subs[s] = struct{}{}
	return f.recentLocked(), s, nil
}

func (f *Feed) recentLocked() []handler.Delivery {
	if len(f.recent) < cap(f.recent) {
		return slices.Clone(f.recent)
	}
	return append(slices.Clone(f.recent[f.next:]), f.recent[:f.next]...)
}

// Unsubscribe forgets s, so Publish no longer fills its buffer and it can
// be collected. Calling it twice is harmless.
func (f *Feed) Unsubscribe(s *Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, s)
}

// Dropped returns how many deliveries s missed because it fell behind.
func (f *Feed) Dropped(s *Subscription) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return s.dropped
}

// Clients returns the number of subscribed clients.
func (f *Feed) Clients() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// TotalDropped returns how many deliveries all clients together missed.
func (f *Feed) TotalDropped() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Rate returns the deliveries per second of the RateWindow seconds up to
// and including now's, oldest first.
func (f *Feed) Rate(now time.Time) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int64, RateWindow)
	end := now.Unix()
	for i := range out {
		sec := end - RateWindow + 1 + int64(i)
		if slot := f.rate[((sec%RateWindow)+RateWindow)%RateWindow]; slot.sec == sec {
			out[i] = slot.n
		}
	}
	return out
}

// Close ends every event stream (their handlers return) and refuses new
// ones. Call it before shutting the HTTP server down: http.Server.Shutdown
// waits for active connections, and an open stream would hold it until
// its deadline. Publish keeps working. Calling it twice is harmless.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
}

// Done is closed by Close.
func (f *Feed) Done() <-chan struct{} { return f.done }
