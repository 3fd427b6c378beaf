package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// brokersUnderTest is every broker, or the one BROKER names.
func brokersUnderTest(t *testing.T) []string {
	if b := os.Getenv("BROKER"); b != "" {
		for _, known := range proc.Brokers {
			if b == known {
				return []string{b}
			}
		}
		t.Fatalf("BROKER=%q: want one of %v", b, proc.Brokers)
	}
	return proc.Brokers
}

// TestBrokers is one behaviour suite, run unchanged against each broker
// behind the "pubsub" component: N orders delivered, each processed once;
// every 10th failing once and retried; poison orders dead-lettered;
// re-published orders deduplicated; and, where the broker has consumer
// groups, two replicas sharing the load.
func TestBrokers(t *testing.T) {
	for _, broker := range brokersUnderTest(t) {
		t.Run(broker, func(t *testing.T) { brokerSuite(t, broker) })
	}
}

func brokerSuite(t *testing.T, broker string) {
	const poison, republished = 5, 10
	n := 200
	if v := os.Getenv("BROKER_ORDERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < republished {
			t.Fatalf("BROKER_ORDERS=%q: want a number ≥ %d", v, republished)
		}
	}
	features := proc.Features(broker)
	failOnce := func(c *subscriber.Config) { c.Faults.FailFirstEvery = 10 }
	s := startSystem(t, options{broker: broker, sub: failOnce})
	nodes := []*node{s.first()}
	if features.ConsumerGroups {
		nodes = append(nodes, s.addSubscriber(proc.SubscriberID, "subscriber-2", failOnce))
	}
	start := time.Now()
	// Spread over seconds: a Kafka consumer group takes seconds to give the
	// second replica its partitions.
	interval := 25 * time.Millisecond
	if n > 200 {
		interval = 2 * time.Millisecond
	}
	s.publish(func(c *publisher.Config) { c.Count, c.Interval, c.Attempts = n, interval, 30 })
	for i := range poison {
		body := fmt.Sprintf(`{"id":-%d,"message":"poison"}`, i+1)
		if code, answer := s.publishHTTP("pubsub", "orders", "application/json", body); code != http.StatusNoContent {
			t.Fatalf("poison publish = %d %s", code, answer)
		}
	}
	s.publish(func(c *publisher.Config) { c.Count, c.Interval = republished, 0 }) // orders 0–9 again
	duplicates := func() int {
		d := 0
		for _, nd := range nodes {
			for _, l := range nd.received.logLines() {
				if strings.Contains(l, "Duplicate delivery") {
					d++
				}
			}
		}
		return d
	}
	wantDups := republished
	if features.DedupesPublishes {
		wantDups = 0
	}
	waitFor(t, 3*time.Minute, "drained", func() bool {
		return s.countKeys("statestore||subscriber/order/*") >= n && len(s.deadLetterIndex()) >= poison && duplicates() >= wantDups &&
			(broker != proc.BrokerRedis || (s.pending("orders") == 0 && s.pending("orders-deadletter") == 0))
	})
	s.checkProcessedOnce(proc.SubscriberID, n)
	if features.DedupesPublishes && duplicates() != 0 {
		t.Errorf("%d re-published orders reached the subscriber; %s should have dropped them as duplicates", duplicates(), broker)
	}
	if got := len(s.deadLetterIndex()); got != poison {
		t.Errorf("%d dead letters, want exactly the %d poison orders", got, poison)
	}
	split := make([]int, len(nodes))
	for i, nd := range nodes {
		split[i] = nd.received.distinct()
		if split[i] == 0 {
			t.Errorf("replica %d processed nothing", i+1)
		}
	}
	t.Logf("%s: %d orders processed once (split %v), %d duplicate deliveries absorbed, %d dead letters, in %s",
		broker, n, split, duplicates(), poison, time.Since(start).Round(100*time.Millisecond))
}

// TestMosquittoKeepsItsData checks that the local MQTT broker can write its
// persistence file: started as root, mosquitto drops to its own user, and
// in a folder it cannot write it logged "Error saving in-memory database"
// every autosave and kept nothing over a restart.
func TestMosquittoKeepsItsData(t *testing.T) {
	b, err := proc.StartBroker(t.Context(), root, proc.BrokerMQTT, &testLog{t: t})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	db := filepath.Join(b.Dir, "mosquitto.db")
	waitFor(t, 15*time.Second, "mosquitto's persistence file written (autosave every 1 s)", func() bool {
		_, err := os.Stat(db)
		return err == nil
	})
}
