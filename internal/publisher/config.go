package publisher

import (
	"dapr-pub-sub/internal/appenv"

	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/sidecar"
)

// Forever is the -count that publishes generated orders until the program
// is stopped (Ctrl-C, SIGTERM), at -rate or -interval.
const Forever = -1

// The publisher's own environment variables (the shared ones are in
// appenv).
const (
	envCount          = "PUBLISH_COUNT"
	envStartID        = "PUBLISH_START_ID"
	envFile           = "PUBLISH_FILE"
	envRate           = "PUBLISH_RATE"
	envInterval       = "PUBLISH_INTERVAL"
	envBulk           = "PUBLISH_BULK"
	envAttempts       = "PUBLISH_ATTEMPTS"
	envOrderStore     = "ORDER_STORE"
	envMetricsAddress = "PUBLISH_METRICS_ADDRESS"
	envEvents         = "PUBLISH_EVENTS"
	envShuffle        = "PUBLISH_SHUFFLE"
	envShare          = "PUBLISH_SHARE"
)

// Config is what one publisher run does, declared once: every field has an
// environment variable (and all but the secret and the log settings a
// flag, the flag winning), ParseConfig reads and checks them, and Env
// renders them back for a child process. A program that starts the
// publisher builds a Config from DefaultConfig and passes Env.
type Config struct {
	Count          int           // orders to publish, Forever for until stopped; PUBLISH_COUNT, default 10
	StartID        int64         // id of the first order; PUBLISH_START_ID, default 0
	Interval       time.Duration // pause between orders; PUBLISH_INTERVAL, default 1s
	PubSub         string        // Dapr pub/sub component; PUBSUB_NAME, default "pubsub"
	Topic          string        // topic; TOPIC_NAME, default "orders"
	DaprAddress    string        // sidecar gRPC address; DAPR_GRPC_ENDPOINT or 127.0.0.1:$DAPR_GRPC_PORT, default port 50001
	Attempts       int           // tries per order before giving up; PUBLISH_ATTEMPTS, default 5
	Rate           float64       // orders per second; PUBLISH_RATE; 0 means use Interval
	File           string        // JSON-lines file of orders ("-" for stdin) instead of generated ones; PUBLISH_FILE
	Bulk           int           // orders per bulk publish call; PUBLISH_BULK, default 1 = one PublishEvent per order
	MetricsAddress string        // host:port serving Prometheus /metrics; PUBLISH_METRICS_ADDRESS, default "" = none
	// Events is the events of each generated order's life, 1 to
	// len(order.Life): order.created, then order.paid, order.shipped,
	// order.delivered; PUBLISH_EVENTS, default 1 (the original example).
	Events int
	// Shuffle publishes the generated events in a random order within
	// each run of this many (a fixed shuffle, the same every run); 0 or 1
	// publishes them in order; PUBLISH_SHUFFLE.
	Shuffle int
	// Share is this publisher's part of the generated events, "i/n": the
	// i-th of every n (1 ≤ i ≤ n), so that n publishers together publish
	// each event once; "" publishes all; PUBLISH_SHARE.
	Share string
	// Outbox stores each order in OrderStore in a state transaction instead
	// of publishing it, and Dapr's transactional outbox publishes it when
	// the transaction commits; PUBLISH_OUTBOX, default false.
	Outbox       bool
	OrderStore   string // the state store of the outbox mode; ORDER_STORE, default "orderstore"
	DaprAPIToken string // the token sent to the sidecar; DAPR_API_TOKEN, a secret: no flag
	LogLevel     string // LOG_LEVEL: debug, info, warn, error; "" is info
	LogFormat    string // LOG_FORMAT: text, json, or "" for text on a terminal and JSON otherwise
}

// DefaultConfig is what the publisher does when nothing is set: what
// ParseConfig gives for no flags and an empty environment.
func DefaultConfig() Config { return cli.Defaults(ParseConfig) }

// Env renders c as the environment of a publisher process: every setting,
// so that ParseConfig(nil, that environment) gives c back.
func (c Config) Env() []string {
	var v appenv.Vars
	v.Set(envCount, c.Count)
	v.Set(envStartID, c.StartID)
	v.Set(envFile, c.File)
	v.Set(envRate, c.Rate)
	v.Set(envInterval, c.Interval)
	v.Set(envBulk, c.Bulk)
	v.Set(appenv.DaprGRPCEndpoint, c.DaprAddress)
	v.Set(appenv.PubSubName, c.PubSub)
	v.Set(appenv.TopicName, c.Topic)
	v.Set(envAttempts, c.Attempts)
	v.Set(appenv.PublishOutbox, c.Outbox)
	v.Set(envOrderStore, c.OrderStore)
	v.Set(envMetricsAddress, c.MetricsAddress)
	v.Set(envEvents, c.Events)
	v.Set(envShuffle, c.Shuffle)
	v.Set(envShare, c.Share)
	v.Set(appenv.DaprAPIToken, c.DaprAPIToken)
	v.Set(appenv.LogLevel, c.LogLevel)
	v.Set(appenv.LogFormat, c.LogFormat)
	return v
}

// pause is the time between two orders: 1/Rate when a rate is set.
func (c Config) pause() time.Duration {
	if c.Rate > 0 {
		return time.Duration(float64(time.Second) / c.Rate)
	}
	return c.Interval
}

const about = `Publishes orders to a Dapr pub/sub topic through the Dapr sidecar at
-dapr-address (which must be running). Each order is a JSON object,
  {"id": N, "message": "Hello from publisher - message N", "sent_at": "<publish time>"}
sent with content type application/json under the CloudEvent id order-N, so a
retried publish keeps its id and the subscriber can recognise a duplicate.
A failed publish is retried -attempts times with backoff (100ms doubling to 2s).

It generates -count orders numbered from -start-id, or publishes the orders of a
JSON-lines file (-file). Orders are paced by -rate (or -interval). It ends with
a summary line: sent, failed, duration, rate. Exit status 1 if an order could
not be published.

Examples:
  publisher -count 100 -rate 50                  100 orders, 50 per second
  publisher -count 100 -events 4 -shuffle 16     100 orders' lives (created, paid, shipped,
                                                 delivered), shuffled within each 16 events
  publisher -file orders.jsonl                   the orders in a file, one {"id":…,"message":…} per line
  cat orders.jsonl | publisher -file -           the same, from stdin
  publisher -count 10000 -rate 2000 -bulk 100    bulk publish, 100 orders per call
  publisher -outbox                              store each order; Dapr's outbox publishes it
  publisher -count -1 -rate 10 -metrics-address 127.0.0.1:9091
                                                 10 per second until Ctrl-C, metrics on :9091/metrics`

// flagGroups orders the flags in the usage text.
var flagGroups = []struct {
	title string
	names []string
}{
	{"What to publish", []string{"count", "start-id", "events", "shuffle", "share", "file"}},
	{"How fast", []string{"rate", "interval", "bulk"}},
	{"Where to", []string{"dapr-address", "pubsub", "topic", "outbox", "order-store"}},
	{"Reliability and monitoring", []string{"attempts", "metrics-address"}},
}

// ParseConfig reads args (without the program name) with defaults from
// getenv. Usage and errors are written to stderr; -h prints the usage and
// gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := &cli.Env{Getenv: getenv}
	var c Config
	fs := cli.NewFlagSet("publisher", about, stderr)
	fs.IntVar(&c.Count, "count", env.Int(envCount, 10), "number of orders to generate; -1 publishes until stopped (Ctrl-C, SIGTERM), at -rate or -interval [PUBLISH_COUNT]")
	fs.Int64Var(&c.StartID, "start-id", env.Int64(envStartID, 0), "id of the first generated order [PUBLISH_START_ID]")
	fs.IntVar(&c.Events, "events", env.Int(envEvents, 1), "events of each generated order's life, in sequence: 1 order.created (the original example), 2 … order.paid, 3 … order.shipped, 4 … order.delivered [PUBLISH_EVENTS]")
	fs.IntVar(&c.Shuffle, "shuffle", env.Int(envShuffle, 0), "publish the generated events shuffled within each run of this many (the same shuffle every run); 0 keeps them in order [PUBLISH_SHUFFLE]")
	fs.StringVar(&c.Share, "share", env.Str(envShare, ""), "publish only this publisher's share of the generated events, i/n: the i-th of every n, so that n publishers publish each once [PUBLISH_SHARE]")
	fs.StringVar(&c.File, "file", env.Str(envFile, ""), "publish the orders in this JSON-lines file instead (-count and -start-id are ignored); - reads stdin. Every line is checked before any is sent [PUBLISH_FILE]")
	fs.Float64Var(&c.Rate, "rate", env.Float64(envRate, 0), "orders per second, e.g. 500; overrides -interval [PUBLISH_RATE]")
	fs.DurationVar(&c.Interval, "interval", env.Duration(envInterval, time.Second), "pause between orders when -rate is 0, e.g. 1s, 10ms, 0 for as fast as possible [PUBLISH_INTERVAL]")
	fs.IntVar(&c.Bulk, "bulk", env.Int(envBulk, 1), "orders per publish call; above 1 uses Dapr's bulk publish API, each batch sent when its last order is due [PUBLISH_BULK]")
	fs.StringVar(&c.DaprAddress, "dapr-address", sidecar.Address(getenv), "the sidecar's gRPC address [DAPR_GRPC_ENDPOINT, or DAPR_GRPC_PORT on 127.0.0.1]")
	fs.StringVar(&c.PubSub, "pubsub", env.Str(appenv.PubSubName, "pubsub"), "Dapr pub/sub component name [PUBSUB_NAME]")
	fs.StringVar(&c.Topic, "topic", env.Str(appenv.TopicName, "orders"), "topic to publish to [TOPIC_NAME]")
	fs.IntVar(&c.Attempts, "attempts", env.Int(envAttempts, 5), "tries per order before the publisher gives up [PUBLISH_ATTEMPTS]")
	fs.BoolVar(&c.Outbox, "outbox", env.Bool(appenv.PublishOutbox, false), "store each order in -order-store (key orders/<id>) in a state transaction; Dapr's transactional outbox publishes it when the transaction commits [PUBLISH_OUTBOX]")
	fs.StringVar(&c.OrderStore, "order-store", env.Str(envOrderStore, "orderstore"), "the state store of -outbox: a transactional one whose component sets outboxPublishPubsub and outboxPublishTopic [ORDER_STORE]")
	fs.StringVar(&c.MetricsAddress, "metrics-address", env.Str(envMetricsAddress, ""), "serve Prometheus metrics at http://ADDRESS/metrics while running, e.g. 127.0.0.1:9091; empty for none [PUBLISH_METRICS_ADDRESS]")
	fs.Usage = func() { usage(fs, stderr) }

	if err := cli.Parse(fs, args); err != nil {
		return Config{}, err
	}
	if env.Err != nil {
		return Config{}, env.Err
	}
	c.DaprAPIToken = getenv(appenv.DaprAPIToken) // a secret: no flag, so it is not in ps
	c.LogLevel, c.LogFormat = getenv(appenv.LogLevel), getenv(appenv.LogFormat)
	return c, c.validate()
}

// usage prints the description, the examples and the flags by group.
func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: publisher [flags]\n\n%s\n\nFlags (environment variable in brackets; a flag wins over its variable):\n", about)
	for _, g := range flagGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			kind, text := flag.UnquoteUsage(f)
			line := "  -" + f.Name
			if kind != "" {
				line += " " + kind
			}
			if f.DefValue != "" && f.DefValue != "0" {
				text += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(text, "\n", "\n    \t"))
		}
	}
}

// share is Share as (i, n), 0-based i; (0, 1) when unset.
func (c Config) share() (i, n int, err error) {
	if c.Share == "" {
		return 0, 1, nil
	}
	a, b, ok := strings.Cut(c.Share, "/")
	i, erri := strconv.Atoi(a)
	n, errn := strconv.Atoi(b)
	if !ok || erri != nil || errn != nil || n < 1 || i < 1 || i > n {
		return 0, 0, fmt.Errorf("-share must be i/n with 1 ≤ i ≤ n, e.g. 1/2, got %q", c.Share)
	}
	return i - 1, n, nil
}

func (c Config) validate() error {
	var errs []error
	if c.Count < Forever {
		errs = append(errs, fmt.Errorf("-count must be ≥ 0, or -1 for until stopped, got %d", c.Count))
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
	if c.Bulk < 1 {
		errs = append(errs, fmt.Errorf("-bulk must be ≥ 1, got %d", c.Bulk))
	}
	if c.Outbox && c.Bulk > 1 {
		errs = append(errs, errors.New("-outbox stores one order per transaction: it takes no -bulk"))
	}
	if c.Events < 1 || c.Events > len(order.Life) {
		errs = append(errs, fmt.Errorf("-events must be 1–%d (an order's usual life), got %d", len(order.Life), c.Events))
	}
	if c.Shuffle < 0 {
		errs = append(errs, fmt.Errorf("-shuffle must be ≥ 0, got %d", c.Shuffle))
	}
	if _, _, err := c.share(); err != nil {
		errs = append(errs, err)
	}
	if c.Outbox && c.OrderStore == "" {
		errs = append(errs, errors.New("-outbox needs -order-store"))
	}
	return errors.Join(errs...)
}
