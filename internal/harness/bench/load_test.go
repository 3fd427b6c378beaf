package bench

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLoadDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		load Load
		i    int
		want time.Duration
	}{
		"first message at start":    {Load{Rate: 1000}, 0, 0},
		"1000/s, message 1":         {Load{Rate: 1000}, 1, time.Millisecond},
		"500/s, message 250":        {Load{Rate: 500}, 250, 500 * time.Millisecond},
		"fractional rate":           {Load{Rate: 0.5}, 3, 6 * time.Second},
		"throughput mode: no delay": {Load{Rate: 0}, 12345, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.load.Due(start, tc.i).Sub(start); got != tc.want {
				t.Errorf("Due(%d) = start+%v, want start+%v", tc.i, got, tc.want)
			}
		})
	}
}

// recordingSend returns a SendFunc that records every batch and runs delay
// before returning.
func recordingSend(delay func(first int64)) (SendFunc, func() [][]Outgoing) {
	var mu sync.Mutex
	var batches [][]Outgoing
	send := func(ctx context.Context, batch []Outgoing) error {
		mu.Lock()
		batches = append(batches, append([]Outgoing(nil), batch...))
		mu.Unlock()
		if delay != nil {
			delay(batch[0].ID)
		}
		return nil
	}
	return send, func() [][]Outgoing { mu.Lock(); defer mu.Unlock(); return batches }
}

func TestGenerateSendsEveryMessageOnce(t *testing.T) {
	tests := map[string]Load{
		"throughput, one sender":       {Messages: 100, Senders: 1},
		"throughput, 4 senders":        {Messages: 1000, Senders: 4},
		"throughput, batches of 64":    {Messages: 1000, Senders: 3, Batch: 64},
		"rate, 4 senders":              {Messages: 200, Rate: 20000, Senders: 4},
		"rate, batches of 10":          {Messages: 200, Rate: 20000, Senders: 2, Batch: 10},
		"more senders than messages":   {Messages: 3, Senders: 8},
		"no senders given: one sender": {Messages: 10},
	}
	for name, l := range tests {
		t.Run(name, func(t *testing.T) {
			rec := NewRecorder(l.Messages)
			send, batches := recordingSend(nil)
			if _, err := Generate(t.Context(), l, rec, send); err != nil {
				t.Fatal(err)
			}
			seen := make([]int, l.Messages)
			for _, b := range batches() {
				if max(l.Batch, 1) < len(b) {
					t.Errorf("batch of %d, limit %d", len(b), l.Batch)
				}
				for _, m := range b {
					seen[m.ID]++
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("message %d sent %d times", id, n)
				}
			}
			if got := rec.Result().Sent; got != l.Messages {
				t.Errorf("recorder saw %d sent, want %d", got, l.Messages)
			}
		})
	}
}

// TestGenerateOpenLoop checks that a sender that blocks does not shift the
// schedule: every stamp is the intended time, however late the send.
func TestGenerateOpenLoop(t *testing.T) {
	const n, rate = 40, 10000.0
	l := Load{Messages: n, Rate: rate, Senders: 1, Batch: 8}
	rec := NewRecorder(n)
	// The first send blocks long enough for every other message to fall due.
	send, batches := recordingSend(func(first int64) {
		if first == 0 {
			time.Sleep(time.Duration(2 * n / rate * float64(time.Second)))
		}
	})
	stats, err := Generate(t.Context(), l, rec, send)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches() {
		for _, m := range b {
			if want := l.Due(stats.Start, int(m.ID)); !m.Stamp.Equal(want) {
				t.Errorf("message %d stamped %v after start, want its intended time %v", m.ID, m.Stamp.Sub(stats.Start), want.Sub(stats.Start))
			}
		}
	}
	if bs := batches(); len(bs) < 2 || len(bs[1]) < 2 {
		t.Errorf("after the stall, overdue messages should go out in batches; batches: %d, second of %d", len(bs), len(bs[min(1, len(bs)-1)]))
	}
	if stats.MaxLag <= 0 {
		t.Errorf("MaxLag = %v after a stalled sender, want > 0", stats.MaxLag)
	}
}

func TestGenerateCountsFailures(t *testing.T) {
	rec := NewRecorder(10)
	boom := errors.New("boom")
	send := func(ctx context.Context, batch []Outgoing) error {
		if batch[0].ID%2 == 0 {
			return boom
		}
		return nil
	}
	if _, err := Generate(t.Context(), Load{Messages: 10, Senders: 2}, rec, send); err != nil {
		t.Fatal(err)
	}
	res := rec.Result()
	if res.Sent != 5 || res.SendFailed != 5 || res.SendError != "boom" {
		t.Errorf("sent %d, failed %d (%q); want 5, 5 (boom)", res.Sent, res.SendFailed, res.SendError)
	}
	if res.Lost != 5 {
		t.Errorf("lost = %d, want the 5 sent and never delivered", res.Lost)
	}
}

func TestGenerateStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	rec := NewRecorder(1000)
	send := func(ctx context.Context, batch []Outgoing) error {
		if batch[0].ID == 10 {
			cancel()
		}
		return nil
	}
	// Without the cancel this would take a second.
	_, err := Generate(ctx, Load{Messages: 1000, Rate: 1000, Senders: 2}, rec, send)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
