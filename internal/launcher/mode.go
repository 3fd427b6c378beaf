package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Mode is how the subscriber takes its deliveries: a trade-off a user
// picks.
type Mode string

const (
	// ModeLatency delivers each order in its own call, as soon as it is
	// read: the lowest latency, and the most CPU per message. The default.
	ModeLatency Mode = "latency"
	// ModeThroughput turns on bulk subscribe: daprd hands the subscriber
	// batches of up to ThroughputBatch orders, waiting at most
	// ThroughputAwait for a batch to fill, and the component reads and
	// delivers far more at once. Several times the throughput per CPU
	// second; up to ThroughputAwait more latency at low rates.
	ModeThroughput Mode = "throughput"
)

// The throughput mode's settings: the measured best on the benchmark
// machine (see the README's Benchmarks). On Redis the component's
// concurrency must be at least 2 × the batch size, or each worker blocks
// until its batch flushes and delivery crawls.
const (
	ThroughputBatch = "200"
	ThroughputAwait = "10ms"
)

// throughputComponent is what the throughput mode changes in the Redis
// pubsub component (components/pubsub.yaml).
var throughputComponent = map[string]string{
	"concurrency": "400", // deliveries in flight: 2 × the batch size
	"queueDepth":  "400", // entries read ahead per XREADGROUP
}

// ParseMode checks s ("" is ModeLatency).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", ModeLatency:
		return ModeLatency, nil
	case ModeThroughput:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q: latency or throughput", s)
}

// SubscriberEnv is the environment that puts the subscriber in mode m.
func (m Mode) SubscriberEnv() []string {
	if m != ModeThroughput {
		return nil
	}
	return []string{"BULK_MAX_MESSAGES=" + ThroughputBatch, "BULK_MAX_AWAIT=" + ThroughputAwait}
}

// Apply tunes the Redis pubsub component in the resources folder dir for
// m. Other brokers have no such knobs here and are left as they are.
func (m Mode) Apply(dir, broker string) error {
	if m != ModeThroughput || (broker != "" && broker != BrokerRedis) {
		return nil
	}
	return SetComponentMetadata(filepath.Join(dir, "pubsub.yaml"), throughputComponent)
}

// SetComponentMetadata sets the value of each named metadata item of the
// component in file, which must already have it as `- name: X` followed by
// `value: "..."`; a name it lacks is an error (so that a renamed item in
// the YAML cannot be silently missed).
func SetComponentMetadata(file string, values map[string]string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out := string(b)
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		re := regexp.MustCompile(`(?m)^(\s*- name: ` + regexp.QuoteMeta(name) + `\s*\n\s*value: )"[^"\n]*"`)
		if !re.MatchString(out) {
			return fmt.Errorf("%s has no metadata item %q with a quoted value", file, name)
		}
		out = re.ReplaceAllString(out, `${1}"`+strings.ReplaceAll(values[name], "$", "$$")+`"`)
	}
	return os.WriteFile(file, []byte(out), 0o644)
}
