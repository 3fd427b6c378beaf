package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesUpToMax(t *testing.T) {
	var got []time.Duration
	for attempt := 1; attempt <= 7; attempt++ {
		got = append(got, Publish.Delay(attempt))
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 2000 * ms, 2000 * ms}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
}

func TestDo(t *testing.T) {
	fast := Backoff{First: time.Millisecond, Max: 2 * time.Millisecond}
	boom, refused := errors.New("boom"), errors.New("refused")
	tests := map[string]struct {
		fail      int   // op fails its first fail attempts
		failWith  error // with this error
		attempts  int
		wantCalls int
		wantErr   error
		wantWaits int
	}{
		"first try":          {fail: 0, attempts: 3, wantCalls: 1},
		"after two failures": {fail: 2, failWith: boom, attempts: 3, wantCalls: 3, wantWaits: 2},
		"attempts run out":   {fail: 5, failWith: boom, attempts: 3, wantCalls: 3, wantErr: boom, wantWaits: 2},
		"permanent at once":  {fail: 5, failWith: Permanent(refused), attempts: 3, wantCalls: 1, wantErr: refused},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			calls, waits := 0, 0
			n, err := fast.Do(t.Context(), tc.attempts, func(attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				if calls <= tc.fail {
					return tc.failWith
				}
				return nil
			}, func(attempt int, wait time.Duration, err error) {
				waits++
				if wait != fast.Delay(attempt) || err == nil {
					t.Errorf("onRetry(%d, %s, %v)", attempt, wait, err)
				}
			})
			if calls != tc.wantCalls || n != tc.wantCalls || waits != tc.wantWaits {
				t.Errorf("calls %d, returned attempt %d, waits %d; want %d, %d, %d", calls, n, waits, tc.wantCalls, tc.wantCalls, tc.wantWaits)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestDoStopsWhenTheContextEnds(t *testing.T) {
	long := Backoff{First: time.Hour, Max: time.Hour}
	// Ended before a wait: op's error, no wait.
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	_, err := long.Do(ctx, 5, func(int) error { calls++; cancel(); return errors.New("boom") }, nil)
	if err == nil || err.Error() != "boom" || calls != 1 {
		t.Errorf("ended in op: err %v after %d calls, want boom after 1", err, calls)
	}
	// Ended during a wait: ctx's error, at once.
	ctx, cancel = context.WithCancel(t.Context())
	calls = 0
	_, err = long.Do(ctx, 5, func(int) error { calls++; return errors.New("boom") }, func(int, time.Duration, error) { cancel() })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("ended in the wait: err %v after %d calls, want context.Canceled after 1", err, calls)
	}
}
