// Package retry has the backoff policy and the waiting that retry loops share.
package retry

import (
	"context"
	"errors"
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

// permanentError marks an error no retry can mend.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can mend: Do returns it at once.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Do calls op — with the attempt's number, 1 for the first — until it
// returns nil, an error marked Permanent, or attempts (≥ 1) have been made,
// or ctx is done; it waits b.Delay(n) after failed attempt n. Before each
// wait it calls onRetry (when not nil) with the attempt that failed, the
// wait and op's error, for a log line or a metric. It returns nil, or the
// number of the last attempt and its error (still marked when permanent; a
// wait cut short returns ctx's error). It blocks; op runs on the caller's
// goroutine.
func (b Backoff) Do(ctx context.Context, attempts int, op func(attempt int) error, onRetry func(attempt int, wait time.Duration, err error)) (int, error) {
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return attempt, nil
		}
		if IsPermanent(err) || attempt >= attempts || ctx.Err() != nil {
			return attempt, err
		}
		wait := b.Delay(attempt)
		if onRetry != nil {
			onRetry(attempt, wait, err)
		}
		if err := Sleep(ctx, wait); err != nil {
			return attempt, err
		}
	}
}
