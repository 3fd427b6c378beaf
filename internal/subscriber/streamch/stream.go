// Package streamch is the subscriber's stream channel: Dapr's streaming
// subscription (SubscribeTopicEventsAlpha1, an alpha API of daprd ≥ 1.14,
// through the Go SDK's client.Subscribe). The app dials its daprd and
// opens one stream per topic; daprd sends each event on it and waits for
// the app's answer (success, retry or drop) for that event. No app port
// and no app channel: daprd never calls the app, so a dead app is a
// closed stream, and every delivery on it counts as failed (daprd
// pkg/runtime/pubsub/streamer: "stream closed") and is redelivered. The
// latency mode only: daprd has no bulk delivery on streams
// (postman/streaming DeliverBulk: "not implemented"). CheckStreamRuntime
// says which daprd runs it safely. It imports handler and no other part
// of the subscriber.
package streamch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/subscriber/handler"
)

// Streams runs the stream channel: one streaming subscription per
// subscription, each reopened with backoff when it breaks (daprd restarts,
// its component reloads), each event handled on a worker of a pool shared by
// all streams, so that no more than Workers events are in hand at once.
type Streams struct {
	client  dapr.Client
	subs    []handler.Subscription
	workers chan struct{} // a slot per event in hand
	log     *slog.Logger
	open    atomic.Int32 // streams open now
	// ready is marked subscribed while every stream is open.
	ready *handler.Readiness
}

// Options are what New needs.
type Options struct {
	// Client is the app's daprd, which the streams are opened to.
	Client dapr.Client
	// Subscriptions get a stream each, and their handlers its events.
	Subscriptions []handler.Subscription
	// Workers bounds the events in hand at once, over all streams (≥ 1).
	Workers int
	// Ready is marked subscribed while every stream is open, and not
	// subscribed else; nil for none.
	Ready *handler.Readiness
	Log   *slog.Logger
}

// New prepares the stream channel of o; Run starts it.
func New(o Options) *Streams {
	if o.Ready == nil {
		o.Ready = new(handler.Readiness)
	}
	return &Streams{client: o.Client, subs: o.Subscriptions, workers: make(chan struct{}, o.Workers), ready: o.Ready, log: o.Log}
}

// Run waits for daprd to answer, refuses a daprd that cannot run the
// stream channel safely (CheckStreamRuntime), and keeps every stream open
// until ctx is done. Then it stops taking events, lets the events in hand
// finish and answers them, and only then closes the streams: an event daprd
// sent that no worker took is never answered, and daprd redelivers it once
// the stream is closed. Run returns when every stream is closed: nil, or
// the refusal.
func (s *Streams) Run(ctx context.Context) error {
	version, err := s.runtimeVersion(ctx)
	if err != nil {
		return nil // ctx is done
	}
	if err := CheckStreamRuntime(version); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, sub := range s.subs {
		wg.Go(func() { s.keepOpen(ctx, sub) })
	}
	wg.Wait()
	return nil
}

// runtimeVersion asks daprd for its version until it answers or ctx is
// done.
func (s *Streams) runtimeVersion(ctx context.Context) (string, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		md, err := s.client.GetMetadata(ctx)
		if err == nil {
			return md.ExtendedMetadata["daprRuntimeVersion"], nil
		}
		s.log.Debug("Waiting for daprd", "err", err)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}

// CheckStreamRuntime refuses daprd versions before 1.18 for the stream
// channel. Before 1.18, a delivery in flight when its stream closes is
// retried until the resiliency policy gives up and is then sent to the
// dead-letter topic (1.16.5 and 1.17.0 pkg/runtime/subscription/
// subscription.go: no check that the subscription is closing), so every app
// restart dead-letters the orders it had in hand. 1.18 keeps them for the
// broker to redeliver. A version it cannot read (a development build's
// "edge") passes.
func CheckStreamRuntime(version string) error {
	major, rest, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil || ma > 1 || (ma == 1 && mi >= 18) {
		return nil
	}
	return fmt.Errorf("the stream channel needs daprd 1.18 or later, and daprd is %s: before 1.18 an app restart sends the orders in flight on its stream to the dead-letter topic; use -channel grpc", version)
}

// keepOpen opens sub's stream and serves it, again and again until ctx is
// done, waiting 100 ms doubling to 2 s between failed attempts.
func (s *Streams) keepOpen(ctx context.Context, sub handler.Subscription) {
	opts := dapr.SubscriptionOptions{PubsubName: sub.Sub.PubsubName, Topic: sub.Sub.Topic, Metadata: sub.Sub.Metadata}
	if sub.Sub.DeadLetterTopic != "" {
		opts.DeadLetterTopic = &sub.Sub.DeadLetterTopic
	}
	wait := 100 * time.Millisecond
	for failures := 0; ctx.Err() == nil; failures++ {
		// The stream outlives ctx: answers are sent on it while the
		// events in hand finish. Opening it does not: daprd can take up
		// to 30 s to answer (it first drains the stream before, see
		// docs/upstream-stream-same-event-id.md), and shutdown must not
		// wait for that.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		opening := context.AfterFunc(ctx, cancel)
		st, err := s.client.Subscribe(sctx, opts)
		if !opening() && err == nil {
			st.Close()
			err = ctx.Err()
		}
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				return
			}
			level := slog.LevelDebug
			if failures%20 == 0 { // once, then every ~40 s
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "Could not open the subscription stream to daprd; retrying", "topic", opts.Topic, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			continue
		}
		failures, wait = -1, 100*time.Millisecond
		s.opened(1)
		s.log.Info("Subscription stream open", "pubsub", opts.PubsubName, "topic", opts.Topic)
		err = s.serve(ctx, st, sub)
		s.opened(-1)
		if cerr := st.Close(); cerr != nil {
			s.log.Debug("Closing the subscription stream", "topic", opts.Topic, "err", cerr)
		}
		cancel()
		if ctx.Err() == nil && !errors.Is(err, errSameIDInHand) {
			s.log.Warn("Subscription stream lost; reopening it (daprd redelivers what was in flight)", "topic", opts.Topic, "err", err)
		}
	}
}

// opened counts streams opening (+1) and closing (-1), and marks ready
// subscribed when every stream is open, else not.
func (s *Streams) opened(delta int32) {
	if s.open.Add(delta) == int32(len(s.subs)) {
		s.ready.MarkSubscribed()
	} else {
		s.ready.MarkUnsubscribed()
	}
}

// errSameIDInHand ends a stream on which daprd sent an event whose id is
// already in hand. daprd 1.16–1.18 matches an answer to its delivery by
// the event id alone (pkg/runtime/pubsub/streamer conn.go
// registerPublishResponse overwrites the earlier registration): the first
// answer completes the second delivery and the first waits until the stream
// closes, holding one of the component's workers. Closing the stream, once
// the events in hand are answered, ends that wait; daprd redelivers the
// orphaned event after the component's processingTimeout. See
// docs/upstream-stream-same-event-id.md.
var errSameIDInHand = errors.New("daprd sent an event whose id is already in hand; reopening the stream to free the delivery it orphaned")

// serve hands the events of st to workers until ctx is done (it returns
// nil), the stream breaks, or daprd sends an event whose id is already in
// hand (it returns why). Either way it returns only after every event it
// took was answered, or its answer failed.
func (s *Streams) serve(ctx context.Context, st *dapr.Subscription, sub handler.Subscription) error {
	type received struct {
		msg *dapr.SubscriptionMessage
		err error
	}
	next, stop := make(chan received), make(chan struct{})
	defer close(stop)
	go func() {
		for {
			msg, err := st.Receive()
			select {
			case next <- received{msg, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var (
		inHand sync.WaitGroup
		mu     sync.Mutex
		ids    = map[string]int{} // event ids in hand
	)
	defer inHand.Wait()
	for {
		var r received
		select {
		case <-ctx.Done():
			return nil
		case r = <-next:
		}
		if r.err != nil {
			return r.err
		}
		select {
		case <-ctx.Done():
			return nil // not taken: daprd redelivers it
		case s.workers <- struct{}{}:
		}
		id := r.msg.ID
		mu.Lock()
		ids[id]++
		again := ids[id] > 1
		mu.Unlock()
		inHand.Go(func() {
			defer func() {
				mu.Lock()
				if ids[id]--; ids[id] == 0 {
					delete(ids, id)
				}
				mu.Unlock()
				<-s.workers
			}()
			s.handle(ctx, sub, r.msg)
		})
		if again {
			s.log.Warn("daprd sent an event again while the first is in hand; reopening the stream once both are answered, to free the delivery daprd orphans (a Dapr defect: docs/upstream-stream-same-event-id.md)",
				"event_id", id, "topic", sub.Sub.Topic)
			return errSameIDInHand
		}
	}
}

// handle runs sub's handler on msg and answers daprd as the gRPC app
// channel does: success, retry when the handler asks for it, else drop
// (daprd then sends the event to the dead-letter topic). The handler's
// context is not cancelled by shutdown; the handler bounds itself.
func (s *Streams) handle(ctx context.Context, sub handler.Subscription, msg *dapr.SubscriptionMessage) {
	retry, err := sub.Handle(context.WithoutCancel(ctx), msg.TopicEvent)
	var answer error
	switch {
	case err == nil:
		answer = msg.Success()
	case retry:
		answer = msg.Retry()
	default:
		answer = msg.Drop()
	}
	if answer != nil && !errors.Is(answer, context.Canceled) {
		s.log.Warn("Could not answer daprd on the subscription stream; it redelivers the event", "event_id", msg.ID, "topic", msg.Topic, "err", answer)
	}
}
