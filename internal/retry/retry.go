// Package retry has the backoff policy and the waiting that retry loops share.
package retry

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx is done, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is an exponential backoff policy: First before the first retry,
// doubling each time, never above Max.
type Backoff struct {
	First, Max time.Duration
}

// Publish is the policy of both publish paths (single and bulk): 100 ms
// doubling to 2 s.
var Publish = Backoff{First: 100 * time.Millisecond, Max: 2 * time.Second}

// Delay is the wait after failed attempt number attempt (1 for the first).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.First
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
