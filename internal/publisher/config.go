package publisher

import (
	"errors"
	"fmt"
	"io"
	"time"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/sidecar"
)

// Config is what one publisher run does. Every field has a flag, and a
// default taken from an environment variable when that is set.
type Config struct {
	Count       int           // orders to publish; PUBLISH_COUNT, default 10
	StartID     int64         // id of the first order; PUBLISH_START_ID, default 0
	Interval    time.Duration // pause between orders; PUBLISH_INTERVAL, default 1s
	PubSub      string        // Dapr pub/sub component; PUBSUB_NAME, default "pubsub"
	Topic       string        // topic; TOPIC_NAME, default "orders"
	DaprAddress string        // sidecar gRPC address; DAPR_GRPC_ENDPOINT or 127.0.0.1:$DAPR_GRPC_PORT, default port 50001
	Attempts    int           // tries per order before giving up; PUBLISH_ATTEMPTS, default 5
	Rate        float64       // orders per second; PUBLISH_RATE; 0 means use Interval
	File        string        // JSON-lines file of orders ("-" for stdin) instead of generated ones; PUBLISH_FILE
}

// pause is the time between two orders: 1/Rate when a rate is set.
func (c Config) pause() time.Duration {
	if c.Rate > 0 {
		return time.Duration(float64(time.Second) / c.Rate)
	}
	return c.Interval
}

// ParseConfig reads args (without the program name) with defaults from
// getenv. Usage and errors are written to stderr; -h gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := &cli.Env{Getenv: getenv}
	var c Config
	fs := cli.NewFlagSet("publisher", "Publishes orders {\"id\": N, \"message\": \"Hello from publisher - message N\"}\nthrough the Dapr sidecar at -dapr-address.", stderr)
	fs.IntVar(&c.Count, "count", env.Int("PUBLISH_COUNT", 10), "number of orders to publish [PUBLISH_COUNT]")
	fs.Int64Var(&c.StartID, "start-id", env.Int64("PUBLISH_START_ID", 0), "id of the first order [PUBLISH_START_ID]")
	fs.DurationVar(&c.Interval, "interval", env.Duration("PUBLISH_INTERVAL", time.Second), "pause between orders, e.g. 1s, 10ms, 0 [PUBLISH_INTERVAL]")
	fs.StringVar(&c.PubSub, "pubsub", env.Str("PUBSUB_NAME", "pubsub"), "Dapr pub/sub component name [PUBSUB_NAME]")
	fs.StringVar(&c.Topic, "topic", env.Str("TOPIC_NAME", "orders"), "topic to publish to [TOPIC_NAME]")
	fs.StringVar(&c.DaprAddress, "dapr-address", sidecar.Address(getenv), "sidecar gRPC address [DAPR_GRPC_ENDPOINT, or DAPR_GRPC_PORT on 127.0.0.1]")
	fs.IntVar(&c.Attempts, "attempts", env.Int("PUBLISH_ATTEMPTS", 5), "tries per order before the publisher gives up [PUBLISH_ATTEMPTS]")
	fs.Float64Var(&c.Rate, "rate", env.Float64("PUBLISH_RATE", 0), "orders per second, e.g. 500; overrides -interval [PUBLISH_RATE]")
	fs.StringVar(&c.File, "file", env.Str("PUBLISH_FILE", ""), "publish the orders in this JSON-lines file instead, one {\"id\":…,\"message\":…} per line; - reads stdin [PUBLISH_FILE]")

	if err := cli.Parse(fs, args); err != nil {
		return Config{}, err
	}
	if env.Err != nil {
		return Config{}, env.Err
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("-count must be ≥ 0, got %d", c.Count))
	}
	if c.StartID < 0 {
		errs = append(errs, fmt.Errorf("-start-id must be ≥ 0, got %d", c.StartID))
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("-interval must be ≥ 0, got %s", c.Interval))
	}
	if c.PubSub == "" || c.Topic == "" || c.DaprAddress == "" {
		errs = append(errs, errors.New("-pubsub, -topic and -dapr-address must not be empty"))
	}
	if c.Attempts < 1 {
		errs = append(errs, fmt.Errorf("-attempts must be ≥ 1, got %d", c.Attempts))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("-rate must be ≥ 0, got %g", c.Rate))
	}
	return errors.Join(errs...)
}
