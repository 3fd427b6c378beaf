package handler_test

import (
	"context"
	"errors"
	"testing"

	"dapr-pub-sub/internal/subscriber/handler"
)

// TestReadinessAnswers: Check says why the app is not ready, in the words
// /readyz answers with, and follows the marks.
func TestReadinessAnswers(t *testing.T) {
	storeErr := errors.New("state store unreachable")
	var storeDown bool
	r := handler.NewReadiness(nil, func(context.Context) error {
		if storeDown {
			return storeErr
		}
		return nil
	})
	if err := r.Check(t.Context()); err == nil || err.Error() != "not subscribed yet: daprd has not read the app's subscriptions" {
		t.Fatalf("Check before any mark = %v", err)
	}
	r.MarkSubscribed()
	if err := r.Check(t.Context()); err != nil || !r.Subscribed() {
		t.Fatalf("Check once subscribed = %v (subscribed %v), want nil", err, r.Subscribed())
	}
	storeDown = true
	if err := r.Check(t.Context()); !errors.Is(err, storeErr) || err.Error() != "not ready: state store unreachable" {
		t.Fatalf("Check with the store down = %v", err)
	}
	r.MarkUnsubscribed()
	if err := r.Check(t.Context()); err == nil || r.Subscribed() {
		t.Fatalf("Check once unsubscribed = %v (subscribed %v), want an error", err, r.Subscribed())
	}
	var zero handler.Readiness
	if err := zero.Check(t.Context()); err == nil {
		t.Fatal("the zero Readiness is ready, want not subscribed")
	}
}
