package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/web"
)

// The live page: GET / (the page), /ui/* (its script and style), /events
// (server-sent events), /api/deadletters and /api/backlog (JSON). The page is read-only;
// see requireAppToken for who may open it.
const (
	liveEventsRoute      = "/events"
	liveDeadLettersRoute = "/api/deadletters"
	liveBacklogRoute     = "/api/backlog"
	liveAssetsPrefix     = "/ui/"
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

// liveDelivery is a handler.Delivery as the page gets it.
type liveDelivery struct {
	Time       time.Time `json:"time"`
	EventID    string    `json:"event_id"`
	Topic      string    `json:"topic"`
	ID         *int64    `json:"id,omitempty"`
	Message    string    `json:"message,omitempty"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	DurationMS float64   `json:"duration_ms"`
}

func toLive(d handler.Delivery) liveDelivery {
	l := liveDelivery{Time: d.Time.UTC(), EventID: d.EventID, Topic: d.Topic, Outcome: d.Outcome, Reason: d.Reason,
		DurationMS: float64(d.Duration.Microseconds()) / 1000}
	if d.Order != nil {
		id := d.Order.ID
		l.ID, l.Message = &id, d.Order.Message
	}
	return l
}

// liveStats is the "stats" event: the handler's counts since start, the
// throughput of the last RateWindow seconds, and how many deliveries this
// client missed.
type liveStats struct {
	Counts  *handler.Stats `json:"counts"`
	Rate    []int64        `json:"rate"`
	Missed  int64          `json:"missed"`
	Clients int            `json:"clients"`
}

// handleEvents streams the feed as server-sent events: first a "snapshot"
// event ({"deliveries": [...recent, oldest first], "stats": {...}}), then a
// "delivery" event per delivery, a "stats" event at most once a second
// when something changed, and a comment line every HeartbeatInterval. Each
// event is flushed at once. The stream ends when the client goes, or when
// the feed is closed (server shutdown).
func handleEvents(feed *Feed, stats *handler.Stats, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		recent, sub, err := feed.Subscribe()
		if err != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer feed.Unsubscribe(sub)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)

		current := func() liveStats {
			return liveStats{Counts: stats, Rate: feed.Rate(time.Now()), Missed: feed.Dropped(sub), Clients: feed.Clients()}
		}
		send := func(event string, v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
				return err
			}
			return rc.Flush()
		}
		live := make([]liveDelivery, len(recent))
		for i, d := range recent {
			live[i] = toLive(d)
		}
		last := current()
		lastJSON, _ := json.Marshal(last)
		if err := send("snapshot", map[string]any{"deliveries": live, "stats": last}); err != nil {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		heartbeat := time.NewTicker(HeartbeatInterval)
		defer heartbeat.Stop()
		for {
			var err error
			select {
			case <-r.Context().Done():
				return
			case <-feed.Done():
				return
			case d := <-sub.C:
				err = send("delivery", toLive(d))
			case <-tick.C:
				s := current()
				b, _ := json.Marshal(s)
				if string(b) != string(lastJSON) {
					lastJSON = b
					err = send("stats", json.RawMessage(b))
				}
			case <-heartbeat.C:
				if _, err = fmt.Fprint(w, ": heartbeat\n\n"); err == nil {
					err = rc.Flush()
				}
			}
			if err != nil {
				log.Debug("Live page client gone", "remote", r.RemoteAddr, "err", err)
				return
			}
		}
	})
}

// deadLetterLister is the part of the store the page reads.
type deadLetterLister interface {
	DeadLetters(ctx context.Context) ([]store.DeadLetter, error)
}

// MaxPageDeadLetters bounds the dead letters /api/deadletters returns (the
// newest); "total" says how many there are.
const MaxPageDeadLetters = 200

// pageDeadLetter is a stored dead letter as the page shows it.
type pageDeadLetter struct {
	EventID    string    `json:"event_id"`
	Topic      string    `json:"topic"`
	Data       string    `json:"data"`
	Reason     string    `json:"reason"`
	ReceivedAt time.Time `json:"received_at"`
}

// handleDeadLetters answers {"total": n, "dead_letters": [...]} with the
// newest MaxPageDeadLetters dead letters kept in the store, newest first;
// 502 if the store cannot be read.
func handleDeadLetters(st deadLetterLister, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 4*time.Second)
		defer cancel()
		dls, err := st.DeadLetters(ctx)
		if err != nil {
			log.Warn("Live page: could not read the dead letters", "err", err)
			http.Error(w, "could not read the dead letters: "+err.Error(), http.StatusBadGateway)
			return
		}
		out := make([]pageDeadLetter, 0, min(len(dls), MaxPageDeadLetters))
		for i := len(dls) - 1; i >= 0 && len(out) < MaxPageDeadLetters; i-- {
			dl := dls[i]
			out = append(out, pageDeadLetter{EventID: dl.EventID, Topic: dl.Topic, Data: string(dl.Data), Reason: dl.Reason, ReceivedAt: dl.ReceivedAt})
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"total": len(dls), "dead_letters": out})
	})
}

// maxBacklogBody bounds what handleBacklog reads from the keeper.
const maxBacklogBody = 1 << 20

// handleBacklog answers with the retention keeper's GET /backlog (see
// retention.Backlog), read from keeperURL at each request: 404 when no
// keeper is configured, 502 when it cannot be read or does not answer
// JSON. The keeper talks to Redis; the subscriber only passes its answer
// on, so the page needs no second origin.
func handleBacklog(keeperURL string, log *slog.Logger) http.Handler {
	client := &http.Client{Timeout: 3 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if keeperURL == "" {
			http.Error(w, "no retention keeper configured: set BACKLOG_URL to its /backlog", http.StatusNotFound)
			return
		}
		fail := func(err error) {
			log.Debug("Live page: could not read the backlog", "url", keeperURL, "err", err)
			http.Error(w, "could not read the backlog from the retention keeper: "+err.Error(), http.StatusBadGateway)
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, keeperURL, nil)
		if err != nil {
			fail(err)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			fail(err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBacklogBody+1))
		switch {
		case err != nil:
			fail(err)
			return
		case resp.StatusCode != http.StatusOK:
			fail(fmt.Errorf("%s answered %s", keeperURL, resp.Status))
			return
		case len(b) > maxBacklogBody || !json.Valid(b):
			fail(fmt.Errorf("%s did not answer JSON of at most %d bytes", keeperURL, maxBacklogBody))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
}

// handlePage serves the page ("/") and its script and style (liveAssetsPrefix
// + name) from web.Files, with headers that keep it to itself: no framing,
// no referrer, scripts, styles and connections from this origin only.
func handlePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, liveAssetsPrefix)
		}
		b, err := fs.ReadFile(web.Files, name)
		if err != nil || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
}

// ServiceOption adds to what NewService builds.
type ServiceOption func(*serviceOptions)

type serviceOptions struct {
	feed *Feed
}

// WithLivePage adds the live page, fed by feed (whose Publish should be the
// handler's Observe): GET / (the page), /events, /api/deadletters,
// /api/backlog and the page's assets under /ui/. With an app token, they
// take the token, or the page key (web.PageKey) as ?key= once and then as
// a cookie; see requireAppToken.
func WithLivePage(feed *Feed) ServiceOption {
	return func(o *serviceOptions) { o.feed = feed }
}

// livePage is the live page's part of a service: nil access and no routes
// without WithLivePage.
type livePage struct {
	feed    *Feed
	access  *pageAccess
	backlog string // the keeper's /backlog; "" when not known
}

func newLivePage(cfg Config, o serviceOptions) livePage {
	if o.feed == nil {
		return livePage{}
	}
	lp := livePage{feed: o.feed, backlog: cfg.BacklogURL}
	if cfg.AppToken != "" {
		lp.access = &pageAccess{key: web.PageKey(cfg.AppToken), cookie: fmt.Sprintf("live_page_%d", cfg.Port), routes: isPageRoute}
	}
	return lp
}

// mount adds the page's routes to mux.
func (lp livePage) mount(mux chi.Router, h *handler.Handler, log *slog.Logger) {
	if lp.feed == nil {
		return
	}
	page := handlePage()
	mux.Method(http.MethodGet, "/", page)
	mux.Method(http.MethodGet, liveAssetsPrefix+"*", page)
	mux.Method(http.MethodGet, liveEventsRoute, handleEvents(lp.feed, &h.Stats, log))
	if h.Store != nil {
		mux.Method(http.MethodGet, liveDeadLettersRoute, handleDeadLetters(h.Store, log))
	}
	mux.Method(http.MethodGet, liveBacklogRoute, handleBacklog(lp.backlog, log))
}
