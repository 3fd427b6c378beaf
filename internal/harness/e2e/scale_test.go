package e2e

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// TestCompetingConsumers: three replicas of the subscriber (one app id,
// each with its own sidecar) share the orders; one replica and its sidecar
// are killed mid-stream and the survivors take over its pending entries.
// Every order is processed once, none is lost.
func TestCompetingConsumers(t *testing.T) {
	const n = 600
	s := startSystem(t)
	replicas := []*node{s.first()}
	for i := 2; i <= 3; i++ {
		replicas = append(replicas, s.addSubscriber(proc.SubscriberID, "subscriber-"+strconv.Itoa(i), nil))
	}
	pub, err := s.StartPublisher(func(c *publisher.Config) { c.Count, c.Interval = n, 2*time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	total := func() int {
		sum := 0
		for _, r := range replicas {
			sum += r.received.distinct()
		}
		return sum
	}
	waitFor(t, time.Minute, "a quarter processed", func() bool { return total() >= n/4 })
	victim := replicas[2]
	victim.App.Signal(syscall.SIGKILL)
	victim.Daprd.Signal(syscall.SIGKILL)
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Tail())
	}
	waitFor(t, 2*time.Minute, "drained", func() bool {
		return s.countKeys("statestore||subscriber/order/*") >= n && s.pending("orders") == 0
	})
	s.checkProcessedOnce(proc.SubscriberID, n)
	split := make([]int, len(replicas))
	for i, r := range replicas {
		split[i] = r.received.distinct()
		if split[i] == 0 {
			t.Errorf("replica %d processed nothing: the load is not shared", i+1)
		}
	}
	t.Logf("split of %d orders over 3 replicas (the third killed mid-stream): %v", n, split)
}

// TestFanOut: a second subscriber app, audit, with its own consumer group,
// receives every order independently of the first; the publisher is the
// same as ever.
func TestFanOut(t *testing.T) {
	const n = 100
	s := startSystem(t)
	audit := s.addSubscriber("audit", "", func(c *subscriber.Config) { c.DeadLetterTopic = "audit-deadletter" })
	s.publish(func(c *publisher.Config) { c.Count, c.Interval = n, 0 })
	waitFor(t, time.Minute, "both apps drained", func() bool {
		return s.countKeys("statestore||subscriber/order/*") >= n && s.countKeys("statestore||audit/order/*") >= n &&
			s.pending("orders") == 0 && s.pendingOf("orders", "audit") == 0
	})
	for _, app := range []string{proc.SubscriberID, "audit"} {
		s.checkProcessedOnce(app, n)
	}
	if got := audit.received.distinct(); got != n {
		t.Errorf("audit printed %d orders, want %d", got, n)
	}
	if got := s.received.distinct(); got != n {
		t.Errorf("subscriber printed %d orders, want %d", got, n)
	}
}
