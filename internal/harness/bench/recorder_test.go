package bench

import (
	"math"
	"testing"
	"time"
)

func TestRecorderCounts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		n        int
		sent     []int64
		deliver  []int64
		want     Result
		wantThru float64
	}{
		"all delivered once": {
			n: 3, sent: []int64{0, 1, 2}, deliver: []int64{2, 0, 1},
			want: Result{Messages: 3, Sent: 3, Delivered: 3},
		},
		"a duplicate": {
			n: 3, sent: []int64{0, 1, 2}, deliver: []int64{0, 1, 1, 2, 1},
			want: Result{Messages: 3, Sent: 3, Delivered: 3, Dup: 2},
		},
		"a loss": {
			n: 3, sent: []int64{0, 1, 2}, deliver: []int64{0, 2},
			want: Result{Messages: 3, Sent: 3, Delivered: 2, Lost: 1},
		},
		"unknown ids": {
			n: 2, sent: []int64{0, 1}, deliver: []int64{0, 1, 7, -1},
			want: Result{Messages: 2, Sent: 2, Delivered: 2, Unknown: 2},
		},
		"never sent is not lost": {
			n: 3, sent: []int64{0}, deliver: []int64{0},
			want: Result{Messages: 3, Sent: 1, Delivered: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := NewRecorder(tc.n)
			for _, id := range tc.sent {
				r.Sent(id, t0)
			}
			for _, id := range tc.deliver {
				r.Deliver(id, t0.Add(time.Millisecond))
			}
			got := r.Result()
			if got.Messages != tc.want.Messages || got.Sent != tc.want.Sent || got.Delivered != tc.want.Delivered ||
				got.Lost != tc.want.Lost || got.Dup != tc.want.Dup || got.Unknown != tc.want.Unknown {
				t.Errorf("got messages %d sent %d delivered %d lost %d dup %d unknown %d, want %+v",
					got.Messages, got.Sent, got.Delivered, got.Lost, got.Dup, got.Unknown, tc.want)
			}
		})
	}
}

func TestRecorderLatencyAndThroughput(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1000
	r := NewRecorder(n)
	// Message i is sent at t0 and delivered (i+1) ms later, so its latency
	// is i+1 ms: the percentiles are known.
	for i := range int64(n) {
		r.Sent(i, t0)
	}
	for i := int64(n - 1); i >= 0; i-- { // order must not matter
		r.Deliver(i, t0.Add(time.Duration(i+1)*time.Millisecond))
	}
	// A duplicate later must change neither latency nor throughput.
	r.Deliver(0, t0.Add(time.Hour))
	got := r.Result()
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.002 { // HDR: 3 significant digits
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("p50", got.Latency.P50, 500)
	near("p90", got.Latency.P90, 900)
	near("p99", got.Latency.P99, 990)
	near("p99.9", got.Latency.P999, 999)
	near("max", got.Latency.Max, 1000)
	near("throughput", got.Throughput, n/1.0) // 1000 delivered over 1 s
	if got.Dup != 1 {
		t.Errorf("dup = %d, want 1", got.Dup)
	}
}

func TestRecorderLatencyClamped(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := NewRecorder(2)
	r.Sent(0, t0)
	r.Sent(1, t0)
	r.Deliver(0, t0.Add(-time.Second)) // clock skew between processes
	r.Deliver(1, t0.Add(2*time.Minute))
	got := r.Result()
	if got.Latency.P50 <= 0 || got.Latency.Max > 60_100 {
		t.Errorf("latencies not clamped to 1 µs..60 s: %+v", got.Latency)
	}
}

func TestRecorderWait(t *testing.T) {
	t.Run("returns once everything sent is delivered", func(t *testing.T) {
		r := NewRecorder(2)
		r.Sent(0, time.Now())
		r.Sent(1, time.Now())
		go func() {
			r.Deliver(0, time.Now())
			r.Deliver(1, time.Now())
		}()
		// An idle limit this long would fail the test's deadline if Wait
		// relied on it.
		if err := r.Wait(t.Context(), time.Hour); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gives up after idle with no progress", func(t *testing.T) {
		r := NewRecorder(2)
		r.Sent(0, time.Now())
		r.Sent(1, time.Now())
		r.Deliver(0, time.Now())
		if err := r.Wait(t.Context(), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if got := r.Result().Lost; got != 1 {
			t.Errorf("lost = %d, want 1", got)
		}
	})
}
