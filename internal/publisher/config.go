package publisher

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
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
}

// ParseConfig reads args (without the program name) with defaults from
// getenv. Usage and errors are written to stderr; -h gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := envReader{getenv: getenv}
	var c Config
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: publisher [flags]\n\nPublishes orders {\"id\": N, \"message\": \"Hello from publisher - message N\"}\nthrough the Dapr sidecar at -dapr-address.\n\nFlags (environment variable in brackets):\n")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.Count, "count", env.int("PUBLISH_COUNT", 10), "number of orders to publish [PUBLISH_COUNT]")
	fs.Int64Var(&c.StartID, "start-id", env.int64("PUBLISH_START_ID", 0), "id of the first order [PUBLISH_START_ID]")
	fs.DurationVar(&c.Interval, "interval", env.duration("PUBLISH_INTERVAL", time.Second), "pause between orders, e.g. 1s, 10ms, 0 [PUBLISH_INTERVAL]")
	fs.StringVar(&c.PubSub, "pubsub", env.str("PUBSUB_NAME", "pubsub"), "Dapr pub/sub component name [PUBSUB_NAME]")
	fs.StringVar(&c.Topic, "topic", env.str("TOPIC_NAME", "orders"), "topic to publish to [TOPIC_NAME]")
	fs.StringVar(&c.DaprAddress, "dapr-address", env.daprAddress(), "sidecar gRPC address [DAPR_GRPC_ENDPOINT, or DAPR_GRPC_PORT on 127.0.0.1]")
	fs.IntVar(&c.Attempts, "attempts", env.int("PUBLISH_ATTEMPTS", 5), "tries per order before the publisher gives up [PUBLISH_ATTEMPTS]")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if env.err != nil {
		return Config{}, env.err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
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
	return errors.Join(errs...)
}

// envReader turns environment variables into flag defaults and remembers the
// first one that does not parse, so a typo is an error rather than a default.
type envReader struct {
	getenv func(string) string
	err    error
}

func (e *envReader) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

func (e *envReader) int64(name string, def int64) int64 {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("environment variable %s=%q is not an integer", name, v)
	}
	return n
}

func (e *envReader) int(name string, def int) int {
	return int(e.int64(name, int64(def)))
}

func (e *envReader) duration(name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("environment variable %s=%q is not a duration such as 1s or 250ms", name, v)
	}
	return d
}

// daprAddress follows the Dapr SDKs: DAPR_GRPC_ENDPOINT wins, then
// DAPR_GRPC_PORT on loopback, then Dapr's default gRPC port.
func (e *envReader) daprAddress() string {
	if v := e.getenv("DAPR_GRPC_ENDPOINT"); v != "" {
		return v
	}
	return "127.0.0.1:" + e.str("DAPR_GRPC_PORT", "50001")
}
