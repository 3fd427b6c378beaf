package handler

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Readiness is whether the app is ready for deliveries (/readyz): daprd
// has read its subscriptions, and the state store answers. The transport
// that daprd reads the subscriptions from marks it subscribed (httpch on
// /dapr/subscribe, grpcch on ListTopicSubscriptions, streamch while every
// stream is open). The zero Readiness is not subscribed and asks no one.
// It is safe for concurrent use.
type Readiness struct {
	subscribed atomic.Bool
	inDaprd    func(context.Context) bool
	ready      func(context.Context) error
}

// errNotSubscribed is Check's answer before daprd has read the
// subscriptions.
var errNotSubscribed = errors.New("not subscribed yet: daprd has not read the app's subscriptions")

// NewReadiness returns a Readiness, not subscribed yet. inDaprd (nil for
// none) asks daprd whether it holds the app's subscriptions, for an app
// that started after its daprd read them (the kubelet restarts an app
// container alone, and daprd does not ask the app again); ready (nil for
// none) asks the state store.
func NewReadiness(inDaprd func(context.Context) bool, ready func(context.Context) error) *Readiness {
	return &Readiness{inDaprd: inDaprd, ready: ready}
}

// MarkSubscribed notes that daprd has read the app's subscriptions.
func (r *Readiness) MarkSubscribed() { r.subscribed.Store(true) }

// MarkUnsubscribed notes that daprd no longer holds them (a subscription
// stream closed).
func (r *Readiness) MarkUnsubscribed() { r.subscribed.Store(false) }

// Subscribed reports whether daprd has read the app's subscriptions, as
// marked or as inDaprd last found.
func (r *Readiness) Subscribed() bool { return r.subscribed.Load() }

// Check returns nil once daprd has read the subscriptions — or, when it
// has not been marked so, inDaprd finds daprd holding them (which marks
// it) — and ready passes; else an error that says why, the answer of
// /readyz. Each question has 2 s.
func (r *Readiness) Check(ctx context.Context) error {
	if !r.subscribed.Load() && r.inDaprd != nil {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if r.inDaprd(dctx) {
			r.subscribed.Store(true)
		}
		cancel()
	}
	if !r.subscribed.Load() {
		return errNotSubscribed
	}
	if r.ready != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := r.ready(ctx); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
	}
	return nil
}
