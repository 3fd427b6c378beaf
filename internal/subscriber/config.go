package subscriber

import (
	"fmt"
	"io"
	"net"
	"strconv"

	"dapr-pub-sub/internal/cli"
)

// Config is the subscriber's settings. Every field has a flag, defaulting to
// an environment variable when that is set.
type Config struct {
	Address         string // listen host; APP_ADDRESS, default 127.0.0.1 (Dapr calls the app on loopback)
	Port            int    // listen port, daprd's --app-port; APP_PORT, default 8001
	PubSub          string // Dapr pub/sub component; PUBSUB_NAME, default "pubsub"
	Topic           string // topic; TOPIC_NAME, default "orders"
	DeadLetterTopic string // where dropped orders go; DEAD_LETTER_TOPIC, default "<topic>-deadletter"
	LogLevel        string // LOG_LEVEL: debug, info, warn, error
}

// ListenAddr is the host:port the service listens on.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
}

// ParseConfig reads args (without the program name) with defaults from
// getenv; usage and errors go to stderr, and -h gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := &cli.Env{Getenv: getenv}
	var c Config
	fs := cli.NewFlagSet("subscriber", "Serves the routes its Dapr sidecar calls with each order event and prints\n\"Received message: {...}\" for every order.", stderr)
	fs.StringVar(&c.Address, "address", env.Str("APP_ADDRESS", "127.0.0.1"), "host to listen on; 0.0.0.0 for all interfaces [APP_ADDRESS]")
	fs.IntVar(&c.Port, "port", env.Int("APP_PORT", 8001), "port to listen on, the sidecar's --app-port [APP_PORT]")
	fs.StringVar(&c.PubSub, "pubsub", env.Str("PUBSUB_NAME", "pubsub"), "Dapr pub/sub component name [PUBSUB_NAME]")
	fs.StringVar(&c.Topic, "topic", env.Str("TOPIC_NAME", "orders"), "topic to subscribe to [TOPIC_NAME]")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", env.Str("DEAD_LETTER_TOPIC", ""), "topic that dropped orders go to (default <topic>-deadletter) [DEAD_LETTER_TOPIC]")
	fs.StringVar(&c.LogLevel, "log-level", env.Str("LOG_LEVEL", "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := cli.Parse(fs, args); err != nil {
		return Config{}, err
	}
	if env.Err != nil {
		return Config{}, env.Err
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = c.Topic + "-deadletter"
	}
	if c.Port < 1 || c.Port > 65535 {
		return Config{}, fmt.Errorf("-port must be 1–65535, got %d", c.Port)
	}
	if c.PubSub == "" || c.Topic == "" {
		return Config{}, fmt.Errorf("-pubsub and -topic must not be empty")
	}
	if c.DeadLetterTopic == c.Topic {
		return Config{}, fmt.Errorf("-dead-letter-topic must differ from -topic, or a dropped order would loop")
	}
	return c, nil
}
