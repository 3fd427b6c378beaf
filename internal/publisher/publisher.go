// Package publisher publishes orders to a Dapr pub/sub topic through the
// sidecar, with the Dapr Go SDK client.
package publisher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
)

// Client is the part of the Dapr SDK client the publisher uses; dapr.Client
// satisfies it, and tests use a fake.
type Client interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
	PublishEvents(ctx context.Context, pubsubName, topicName string, events []any, opts ...dapr.PublishEventsOption) dapr.PublishEventsResponse
}

// Publisher publishes orders through Client as Config says. Only Client
// (Store too with Config.Outbox), Config and Log are required. Not safe for
// concurrent use.
type Publisher struct {
	Client Client
	Store  Store // the order store of Config.Outbox
	Config Config
	Log    *slog.Logger
	// Metrics counts what was published; nil for none.
	Metrics *Metrics
	// Progress is told how many more orders were published; nil for none.
	Progress func(n int)
	// OrderLevel is the level of the "Published order" line logged for each
	// order: Info (the zero value), or Debug when a progress bar shows it.
	OrderLevel slog.Level

	failed int // orders given up on
}

// Publish publishes cfg.Count generated orders (until ctx ends for
// Forever), and logs each one; see PublishOrders.
func Publish(ctx context.Context, c Client, cfg Config, log *slog.Logger) error {
	p := &Publisher{Client: c, Config: cfg, Log: log}
	_, err := p.publish(ctx, generated(cfg))
	return err
}

// PublishOrders publishes orders and logs each one, with
// (&Publisher{Client: c, Config: cfg, Log: log}).PublishOrders.
func PublishOrders(ctx context.Context, c Client, cfg Config, orders []order.Order, log *slog.Logger) (int, error) {
	return (&Publisher{Client: c, Config: cfg, Log: log}).PublishOrders(ctx, orders)
}

// PublishOrders publishes orders in turn, each at its scheduled time
// (start + i × the pause that Config.Rate or Config.Interval gives, so a
// slow publish does not shift the rest), and logs each one.
//
// With Config.Bulk = 1 each order is one PublishEvent call. With Bulk = N > 1
// the orders go in batches of N through one PublishEvents (Dapr's bulk
// publish) call, each batch when its last order is due, so the rate is never
// exceeded; every entry keeps its order's CloudEvent id.
//
// A publish that fails is retried with exponential backoff (100 ms doubling
// to 2 s) up to Config.Attempts tries in all, under the same CloudEvent ids;
// in a batch only the entries that failed are sent again. A refusal that a
// retry cannot change (see permanent) is not retried. Each order is
// published with SentAt set to the time of its first try.
//
// It stops at the first order that is invalid or still fails, and returns
// how many orders were published (acknowledged by the sidecar) and that
// order's error, or ctx's error.
func (p *Publisher) PublishOrders(ctx context.Context, orders []order.Order) (int, error) {
	return p.publish(ctx, fromSlice(orders))
}

// events is how many events generated(c) gives: Forever for no end.
func (c Config) events() int {
	if c.Count == Forever {
		return Forever
	}
	part, parts, _ := c.share()
	return max(0, (c.Count*max(c.Events, 1)-part+parts-1)/parts)
}

// source returns the order at position i, or false past the last one.
type source func(i int) (order.Order, bool)

// fromSlice is the source of orders.
func fromSlice(orders []order.Order) source {
	return func(i int) (order.Order, bool) {
		if i < len(orders) {
			return orders[i], true
		}
		return order.Order{}, false
	}
}

// generated is the original example's orders cfg.StartID, cfg.StartID+1, …: cfg.Count
// of them, or without end for Forever; each a life of cfg.Events events in
// sequence (order.Life), the events of one order one after the other. With
// cfg.Share only this publisher's share of them, with cfg.Shuffle in a fixed
// random order within each run of that many.
func generated(cfg Config) source {
	events := max(cfg.Events, 1)
	part, parts, _ := cfg.share() // checked by ParseConfig
	total := cfg.events()
	window := max(cfg.Shuffle, 1)
	var perm []int // the shuffle of the window last asked for
	permOf := -1
	return func(i int) (order.Order, bool) {
		if total >= 0 && i >= total {
			return order.Order{}, false
		}
		if window > 1 {
			w := i / window
			if w != permOf {
				size := window
				if total >= 0 {
					size = min(window, total-w*window)
				}
				perm = rand.New(rand.NewPCG(uint64(cfg.StartID), uint64(w))).Perm(size)
				permOf = w
			}
			i = w*window + perm[i%window]
		}
		k := int64(i*parts + part) // the event's place among all of them
		o := order.New(cfg.StartID + k/int64(events))
		seq := k%int64(events) + 1
		return o.Event(seq, order.Life[seq-1]), true
	}
}

func (p *Publisher) publish(ctx context.Context, next source) (int, error) {
	start, pause := time.Now(), p.Config.pause()
	size := max(p.Config.Bulk, 1)
	batch := make([]order.Order, 0, size)
	sent := 0
	for i := 0; ; {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		batch = batch[:0]
		for len(batch) < size {
			o, ok := next(i)
			if !ok {
				break
			}
			batch = append(batch, o)
			i++
		}
		if len(batch) == 0 {
			return sent, nil
		}
		// The batch goes when its last order is due.
		if wait := time.Until(start.Add(time.Duration(i-1) * pause)); wait > 0 {
			if err := retry.Sleep(ctx, wait); err != nil {
				return sent, err
			}
		}
		valid, invalid := len(batch), error(nil)
		for k, o := range batch {
			if err := o.Validate(); err != nil {
				valid, invalid = k, fmt.Errorf("order %d: %w", o.ID, err)
				break
			}
		}
		if valid > 0 {
			n, err := p.publishBatch(ctx, batch[:valid])
			sent += n
			if err != nil {
				return sent, err
			}
		}
		if invalid != nil {
			p.failed++
			if p.Metrics != nil {
				p.Metrics.failures.Inc()
			}
			return sent, invalid
		}
	}
}

// publishBatch publishes valid orders with one PublishEvent, or one
// PublishEvents for Bulk > 1, and records the outcome.
func (p *Publisher) publishBatch(ctx context.Context, batch []order.Order) (int, error) {
	began := time.Now()
	var (
		acked []order.Order
		err   error
	)
	if p.Config.Bulk > 1 {
		acked, err = p.publishBulk(ctx, batch)
	} else if p.Config.Outbox {
		if err = p.storeOne(ctx, batch[0]); err == nil {
			acked = batch
		}
	} else if err = p.publishOne(ctx, batch[0]); err == nil {
		acked = batch
	}
	if m := p.Metrics; m != nil {
		m.seconds.Observe(time.Since(began).Seconds())
		m.published.Add(float64(len(acked)))
	}
	if err != nil {
		p.failed += len(batch) - len(acked)
		if p.Metrics != nil {
			p.Metrics.failures.Add(float64(len(batch) - len(acked)))
		}
	}
	line := "Published order"
	if p.Config.Outbox {
		line = "Stored order; the outbox publishes it"
	}
	for _, o := range acked {
		if o.Sequence() > 1 || o.Type != "" {
			p.Log.Log(ctx, p.OrderLevel, line, "id", o.ID, "seq", o.Sequence(), "type", o.Kind(), "message", o.Message, "topic", p.Config.Topic)
			continue
		}
		p.Log.Log(ctx, p.OrderLevel, line, "id", o.ID, "message", o.Message, "topic", p.Config.Topic)
	}
	if p.Progress != nil && len(acked) > 0 {
		p.Progress(len(acked))
	}
	return len(acked), err
}

// publishOne publishes o as application/json under its stable CloudEvent
// id, retrying as PublishOrders says.
func (p *Publisher) publishOne(ctx context.Context, o order.Order) error {
	cfg := p.Config
	o.SentAt = time.Now().UTC()
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode order %d: %w", o.ID, err)
	}
	opts := []dapr.PublishEventOption{
		dapr.PublishEventWithContentType("application/json"),
		dapr.PublishEventWithMetadata(map[string]string{order.CloudEventIDKey: o.EventID()}),
	}
	n, err := p.try(ctx, func() error { return p.Client.PublishEvent(ctx, cfg.PubSub, cfg.Topic, data, opts...) },
		func(attempt int, wait time.Duration, err error) {
			p.Log.Warn("Publish failed, retrying", "id", o.ID, "attempt", attempt, "backoff", wait, "err", err)
			p.countRetries(1)
		})
	switch {
	case err == nil || stopped(ctx, err):
		return err
	case retry.IsPermanent(err):
		return fmt.Errorf("publish order %d to %s/%s was refused: %w", o.ID, cfg.PubSub, cfg.Topic, err)
	}
	return fmt.Errorf("publish order %d to %s/%s failed after %d attempt(s) (is the sidecar at %s running?): %w",
		o.ID, cfg.PubSub, cfg.Topic, n, cfg.DaprAddress, err)
}

// try runs op under the publish backoff (retry.Publish), up to
// -attempts times; an error permanent reports is marked so, and ends it at
// once. onRetry is told of each retry, for its log line and metric.
func (p *Publisher) try(ctx context.Context, op func() error, onRetry func(attempt int, wait time.Duration, err error)) (int, error) {
	return retry.Publish.Do(ctx, p.Config.Attempts, func(int) error {
		err := op()
		if permanent(err) {
			return retry.Permanent(err)
		}
		return err
	}, onRetry)
}

// stopped reports whether err is ctx's own: the wait before a retry cut
// short because the publisher is stopping.
func stopped(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// countRetries adds n to the retries metric, when there is one.
func (p *Publisher) countRetries(n int) {
	if p.Metrics != nil {
		p.Metrics.retries.Add(float64(n))
	}
}

// permanent reports whether the sidecar refused a publish for a reason a
// retry cannot change: an unknown component or topic, no permission, a
// message too large, a bad token.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
		return true
	}
	return false
}

// ReadOrders reads orders from JSON lines, one order per line; blank lines
// are skipped. Every line is checked before any is published, and an error
// names the first bad line.
func ReadOrders(r io.Reader) ([]order.Order, error) {
	var orders []order.Order
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		o, err := order.Decode([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		orders = append(orders, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	return orders, nil
}
