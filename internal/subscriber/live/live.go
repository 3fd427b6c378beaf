// Package live is the subscriber's live page: a Feed of the deliveries
// the handler observes, streamed to browsers as server-sent events, the
// dead letters kept in the state store, the retention keeper's backlog,
// and the page itself (web/, embedded in the binary). The HTTP service
// (httpch) mounts it and guards it; live imports no transport.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/live/web"
)

// The page's routes. The page is read-only; the HTTP service that mounts
// it (httpch) says who may open it: the app token, or the page key.
const (
	pageRoute        = "/"                // the page
	assetsPrefix     = "/ui/"             // its script and style
	eventsRoute      = "/events"          // server-sent events
	deadLettersRoute = "/api/deadletters" // JSON
	backlogRoute     = "/api/backlog"     // JSON
)

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

// handlePage serves the page ("/") and its script and style (assetsPrefix
// + name) from web.Files, with headers that keep it to itself: no framing,
// no referrer, scripts, styles and connections from this origin only.
func handlePage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != pageRoute {
			name = strings.TrimPrefix(r.URL.Path, assetsPrefix)
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

// Options are what the page needs.
type Options struct {
	// Feed is where the deliveries come from; its Publish should be the
	// handler's Observe.
	Feed *Feed
	// Stats are the handler's counts, which the page shows.
	Stats *handler.Stats
	// Store holds the dead letters at /api/deadletters; nil for no such
	// route.
	Store *store.Store
	// BacklogURL is the retention keeper's GET /backlog, passed on at
	// /api/backlog; "" when not known (the route answers 404).
	BacklogURL string
	Log        *slog.Logger
}

// Page is the live page: GET / (the page), /ui/* (its script and style),
// /events (server-sent events of Feed), /api/deadletters and
// /api/backlog (JSON). The HTTP service mounts it (httpch.Options.Page).
type Page struct {
	o Options
}

// New returns the page of o.
func New(o Options) *Page {
	return &Page{o: o}
}

// Owns reports whether path is one of the page's routes.
func (p *Page) Owns(path string) bool {
	return path == pageRoute || path == eventsRoute || path == deadLettersRoute || path == backlogRoute || strings.HasPrefix(path, assetsPrefix)
}

// Mount adds the page's routes to r.
func (p *Page) Mount(r chi.Router) {
	page := handlePage()
	r.Method(http.MethodGet, pageRoute, page)
	r.Method(http.MethodGet, assetsPrefix+"*", page)
	r.Method(http.MethodGet, eventsRoute, handleEvents(p.o.Feed, p.o.Stats, p.o.Log))
	if p.o.Store != nil {
		r.Method(http.MethodGet, deadLettersRoute, handleDeadLetters(p.o.Store, p.o.Log))
	}
	r.Method(http.MethodGet, backlogRoute, handleBacklog(p.o.BacklogURL, p.o.Log))
}
