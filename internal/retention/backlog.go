package retention

import (
	"encoding/json"
	"net/http"
	"time"
)

// Backlog is what the last pass saw, as GET /backlog answers it: the
// subscriber's live page shows it next to its counts.
type Backlog struct {
	PassAt  time.Time       `json:"pass_at"` // zero before the first pass
	Window  string          `json:"window"`
	Error   string          `json:"error,omitempty"` // the last pass's, if it failed
	Streams []StreamBacklog `json:"streams"`
}

// StreamBacklog is one stream's backlog.
type StreamBacklog struct {
	Stream string `json:"stream"`
	Length int64  `json:"length"`
	Bytes  int64  `json:"bytes"`
	// WindowExceeded: a group still needs an entry older than the window.
	WindowExceeded bool           `json:"window_exceeded"`
	Groups         []GroupBacklog `json:"groups"`
}

// GroupBacklog is one consumer group's backlog.
type GroupBacklog struct {
	Group                string  `json:"group"`
	Lag                  int64   `json:"lag"`
	Pending              int64   `json:"pending"`
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	Redeliveries         int64   `json:"redeliveries"`
}

// remember keeps a pass's reports for Backlog. A stream the pass could not
// read keeps no figures: the error says why.
func (k *Keeper) remember(reports []StreamReport, err error) {
	b := Backlog{PassAt: k.now().UTC(), Window: k.cfg.Window.String(), Streams: make([]StreamBacklog, 0, len(reports))}
	if err != nil {
		b.Error = err.Error()
	}
	for _, r := range reports {
		s := StreamBacklog{Stream: r.Stream, Length: r.Length, Bytes: r.Bytes, WindowExceeded: r.WindowExceeded, Groups: make([]GroupBacklog, 0, len(r.Groups))}
		for _, g := range r.Groups {
			s.Groups = append(s.Groups, GroupBacklog{Group: g.Name, Lag: g.Lag, Pending: g.Pending,
				OldestPendingSeconds: g.OldestPending.Seconds(), Redeliveries: g.Redeliveries})
		}
		b.Streams = append(b.Streams, s)
	}
	k.mu.Lock()
	k.last = b
	k.mu.Unlock()
}

// Backlog returns what the last pass saw.
func (k *Keeper) Backlog() Backlog {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.last
	if b.Window == "" {
		b.Window = k.cfg.Window.String()
	}
	if b.Streams == nil {
		b.Streams = []StreamBacklog{}
	}
	return b
}

// BacklogHandler serves k.Backlog() as JSON.
func BacklogHandler(k *Keeper) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(k.Backlog())
	})
}
