// Package publisher publishes orders to a Dapr pub/sub topic through the
// sidecar, with the Dapr Go SDK client.
package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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

// Publish publishes cfg.Count orders, cfg.Interval apart, and logs each one.
// A publish that fails is retried with exponential backoff up to cfg.Attempts
// times, under the same CloudEvent id; a refusal that a retry cannot change
// (see permanent) is not retried. Publish returns the first order that
// still fails, or ctx's error.
func Publish(ctx context.Context, c Client, cfg Config, log *slog.Logger) error {
	for i := range cfg.Count {
		if i > 0 && cfg.Interval > 0 {
			if err := retry.Sleep(ctx, cfg.Interval); err != nil {
				return err
			}
		}
		o := order.New(cfg.StartID + int64(i))
		if err := publishOne(ctx, c, cfg, o, log); err != nil {
			return err
		}
		log.Info("Published order", "id", o.ID, "message", o.Message, "topic", cfg.Topic)
	}
	return nil
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
// Logs go to stderr (LOG_FORMAT and LOG_LEVEL shape them); stdout is not used.
func Run(ctx context.Context, args []string, getenv func(string) string, _, stderr io.Writer) error {
	log := logging.New(stderr, getenv("LOG_FORMAT"), getenv("LOG_LEVEL"))
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	client, err := sidecar.Dial(cfg.DaprAddress, getenv("DAPR_API_TOKEN"), log)
	if err != nil {
		return err
	}
	defer client.Close()
	log.Info("Publishing through the Dapr sidecar", "address", cfg.DaprAddress, "count", cfg.Count)
	start := time.Now()
	if err := Publish(ctx, client, cfg, log); err != nil {
		return err
	}
	log.Info("Done", "published", cfg.Count, "duration", time.Since(start).Round(time.Millisecond).String())
	return nil
}
