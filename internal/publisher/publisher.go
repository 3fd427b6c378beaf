// Package publisher publishes orders to a Dapr pub/sub topic through the
// sidecar, with the Dapr Go SDK client.
package publisher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
	"dapr-pub-sub/internal/sidecar"
)

// Client is the part of the Dapr SDK client the publisher uses; dapr.Client
// satisfies it, and tests use a fake.
type Client interface {
	PublishEvent(ctx context.Context, pubsubName, topicName string, data any, opts ...dapr.PublishEventOption) error
}

// CloudEventID is the CloudEvent id an order is published under. It is a
// stable key: a retried publish of the same order carries the same id, so a
// subscriber can recognise the duplicate.
func CloudEventID(id int64) string {
	return "order-" + strconv.FormatInt(id, 10)
}

// Publish publishes cfg.Count generated orders, and logs each one; see
// PublishOrders.
func Publish(ctx context.Context, c Client, cfg Config, log *slog.Logger) error {
	_, err := PublishOrders(ctx, c, cfg, generate(cfg), log)
	return err
}

// generate returns the seed's orders cfg.StartID … cfg.StartID+cfg.Count-1.
func generate(cfg Config) []order.Order {
	orders := make([]order.Order, cfg.Count)
	for i := range orders {
		orders[i] = order.New(cfg.StartID + int64(i))
	}
	return orders
}

// PublishOrders publishes orders in turn, each at its scheduled time
// (start + i × the pause that cfg.Rate or cfg.Interval gives, so a slow
// publish does not shift the rest), and logs each one. A publish that fails
// is retried with exponential backoff up to cfg.Attempts times, under the
// same CloudEvent id; a refusal that a retry cannot change (see permanent)
// is not retried. It returns how many were published, and the first order
// that still fails, or ctx's error.
func PublishOrders(ctx context.Context, c Client, cfg Config, orders []order.Order, log *slog.Logger) (int, error) {
	start, pause := time.Now(), cfg.pause()
	for i, o := range orders {
		if wait := time.Until(start.Add(time.Duration(i) * pause)); i > 0 && wait > 0 {
			if err := retry.Sleep(ctx, wait); err != nil {
				return i, err
			}
		}
		if err := publishOne(ctx, c, cfg, o, log); err != nil {
			return i, err
		}
		log.Info("Published order", "id", o.ID, "message", o.Message, "topic", cfg.Topic)
	}
	return len(orders), nil
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

// publishOne validates o and publishes it as application/json under its
// stable CloudEvent id, retrying as Publish does.
func publishOne(ctx context.Context, c Client, cfg Config, o order.Order, log *slog.Logger) error {
	if err := o.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode order %d: %w", o.ID, err)
	}
	opts := []dapr.PublishEventOption{
		dapr.PublishEventWithContentType("application/json"),
		dapr.PublishEventWithMetadata(map[string]string{"cloudevent.id": CloudEventID(o.ID)}),
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = c.PublishEvent(ctx, cfg.PubSub, cfg.Topic, data, opts...)
		if err == nil {
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("publish order %d to %s/%s was refused: %w", o.ID, cfg.PubSub, cfg.Topic, err)
		}
		if attempt >= cfg.Attempts || ctx.Err() != nil {
			return fmt.Errorf("publish order %d to %s/%s failed after %d attempt(s) (is the sidecar at %s running?): %w",
				o.ID, cfg.PubSub, cfg.Topic, attempt, cfg.DaprAddress, err)
		}
		log.Warn("Publish failed, retrying", "id", o.ID, "attempt", attempt, "backoff", backoff, "err", err)
		if err := retry.Sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(2*backoff, 2*time.Second)
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

// Run is the publisher program: it parses args, connects to the sidecar and
// publishes. It returns nil when every order was published; -h is not an error.
//
// Orders come from -file (stdin for "-") or are generated. Logs go to stderr
// (LOG_FORMAT and LOG_LEVEL shape them), ending with a summary: sent,
// failed, duration, rate.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stderr io.Writer) error {
	log := logging.New(stderr, getenv("LOG_FORMAT"), getenv("LOG_LEVEL"))
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	orders, err := loadOrders(cfg, stdin)
	if err != nil {
		return err
	}
	client, err := sidecar.Dial(cfg.DaprAddress, getenv("DAPR_API_TOKEN"), log)
	if err != nil {
		return err
	}
	defer client.Close()
	log.Info("Publishing through the Dapr sidecar", "address", cfg.DaprAddress, "count", len(orders))
	start := time.Now()
	sent, err := PublishOrders(ctx, client, cfg, orders, log)
	elapsed := time.Since(start)
	failed := len(orders) - sent
	log.Info("Summary", "sent", sent, "failed", failed, "duration", elapsed.Round(time.Millisecond).String(),
		"rate_per_s", fmt.Sprintf("%.1f", float64(sent)/max(elapsed.Seconds(), 1e-9)))
	return err
}

// loadOrders returns the orders of cfg.File, or cfg.Count generated ones.
func loadOrders(cfg Config, stdin io.Reader) ([]order.Order, error) {
	if cfg.File == "" {
		return generate(cfg), nil
	}
	r := stdin
	if cfg.File != "-" {
		f, err := os.Open(cfg.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	orders, err := ReadOrders(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return orders, nil
}
