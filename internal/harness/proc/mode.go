package proc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
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
	ThroughputBatch = 200
	ThroughputAwait = 10 * time.Millisecond
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

// Bulk is the subscriber's bulk-subscribe batch size and longest wait in
// mode m; 0, 0 is off.
func (m Mode) Bulk() (batch int, await time.Duration) {
	if m != ModeThroughput {
		return 0, 0
	}
	return ThroughputBatch, ThroughputAwait
}

// Apply tunes the Redis pubsub component in the resources folder dir for
// m. Other brokers have no such knobs here and are left as they are.
func (m Mode) Apply(dir, broker string) error {
	if m != ModeThroughput || (broker != "" && broker != BrokerRedis) {
		return nil
	}
	return SetComponentMetadata(filepath.Join(dir, "pubsub.yaml"), throughputComponent)
}

// SetComponentMetadata sets the value of each named item of spec.metadata
// in the Dapr Component in file, keeping its comments. Every name must
// already be there with a value, so that a renamed item in the YAML cannot
// be silently missed.
func SetComponentMetadata(file string, values map[string]string) error {
	return editMetadata(file, func(items *yaml.Node) error {
		for _, name := range sortedNames(values) {
			var value *yaml.Node
			for _, item := range items.Content {
				if n := mapValue(item, "name"); n != nil && n.Value == name {
					value = mapValue(item, "value")
				}
			}
			if value == nil || value.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s has no metadata item %q with a value", file, name)
			}
			value.Value, value.Tag, value.Style = values[name], "!!str", yaml.DoubleQuotedStyle
		}
		return nil
	})
}

// AddComponentMetadata adds each named item to spec.metadata in the Dapr
// Component in file; none may be there already.
func AddComponentMetadata(file string, values map[string]string) error {
	return editMetadata(file, func(items *yaml.Node) error {
		for _, name := range sortedNames(values) {
			for _, item := range items.Content {
				if n := mapValue(item, "name"); n != nil && n.Value == name {
					return fmt.Errorf("%s already has metadata item %q", file, name)
				}
			}
			str := func(v string, style yaml.Style) *yaml.Node {
				return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: style}
			}
			items.Content = append(items.Content, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
				str("name", 0), str(name, 0), str("value", 0), str(values[name], yaml.DoubleQuotedStyle),
			}})
		}
		return nil
	})
}

// editMetadata applies edit to the spec.metadata list of the Dapr
// Component in file and writes it back, comments kept.
func editMetadata(file string, edit func(items *yaml.Node) error) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	items := mapValue(mapValue(docRoot(&doc), "spec"), "metadata")
	if items == nil || items.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s has no spec.metadata list", file)
	}
	if err := edit(items); err != nil {
		return err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return os.WriteFile(file, out.Bytes(), 0o644)
}

func sortedNames(values map[string]string) []string {
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func docRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return nil
}

// mapValue is the value under key in the mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
