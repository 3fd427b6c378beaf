package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/cluster"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/testutil"
)

// clusterOrders is how many orders each cluster scenario publishes
// (CLUSTER_ORDERS; `make cluster` raises it).
const clusterOrders = 1000

// TestClusterJetStream runs the cluster scenarios on NATS JetStream, three
// nodes on test hosts of our own, every topic a stream with three
// replicas (BROKER=jetstream; Redis stays the state store, on loopback),
// the subscriber as two replicas sharing one durable consumer (a queue
// group). A third of the way into publishing:
//
//   - stream leader killed: kill -9 of the node leading the orders stream;
//     the other two elect a new leader;
//   - stream leader cut off: its host off the network for 15 s, then
//     healed; it rejoins and catches up;
//   - rolling restart: each node restarted in turn (SIGTERM), the next
//     one only once the cluster is healthy again.
//
// JetStream acknowledges a publish once a majority stored it, so no
// acknowledged order may be lost; every order processed once, nothing
// dead-lettered.
func TestClusterJetStream(t *testing.T) {
	var s *sys
	start := func(t *testing.T) *sys {
		s = startSystem(t, options{broker: proc.BrokerJetStream})
		return s
	}
	leader := func(t *testing.T) *cluster.NATSNode {
		l, err := s.JetStream.StreamLeader(t.Context(), "orders")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	newLeader := func(t *testing.T, old *cluster.NATSNode) {
		waitFor(t, time.Minute, "a new leader of the orders stream", func() bool {
			l, err := s.JetStream.StreamLeader(t.Context(), "orders")
			return err == nil && l != old
		})
	}
	idle := func(t *testing.T) bool {
		ok, err := s.JetStream.ConsumerIdle(t.Context(), "orders", proc.SubscriberID)
		return err == nil && ok
	}
	runCluster(t, "jetstream", start, idle, []clusterFault{
		{"stream leader killed", func(t *testing.T) {
			old := leader(t)
			old.Kill()
			newLeader(t, old)
		}},
		{"stream leader cut off for 15s", func(t *testing.T) {
			old := leader(t)
			if err := old.Host.Cut(); err != nil {
				t.Fatal(err)
			}
			newLeader(t, old)
			time.Sleep(15 * time.Second) // the host stays cut off: the fault itself
			if err := old.Host.Heal(); err != nil {
				t.Fatal(err)
			}
			if err := s.JetStream.WaitHealthy(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
		{"rolling restart", func(t *testing.T) {
			for _, n := range s.JetStream.Nodes {
				if err := n.Restart(); err != nil {
					t.Fatal(err)
				}
				if err := s.JetStream.WaitHealthy(t.Context()); err != nil {
					t.Fatalf("after restarting %s: %v", n.Host.Name, err)
				}
			}
		}},
	})
}

// TestClusterRabbitMQ runs the cluster scenarios on RabbitMQ, three nodes
// on test hosts of our own behind a loopback balancer
// (BROKER=rabbitmq-cluster), the subscribers' queues quorum queues with a
// member on every node; the subscriber runs as two replicas on one queue.
// A third of the way into publishing:
//
//   - queue leader killed: kill -9 of the node leading the subscriber's
//     orders queue; the other two elect a new leader;
//   - queue leader cut off: its host off the network for 15 s, then
//     healed; the other two elect a new leader of the queue, and the old
//     one catches up as a follower (15 s is under Erlang's net_ticktime,
//     60 s: the cluster itself sees no partition);
//   - rolling restart: each node restarted in turn (SIGTERM), the next
//     one only once all three run as one cluster again.
//
// A publish is confirmed once a majority of the queue's members stored
// it, so no confirmed order may be lost; every order processed once,
// nothing dead-lettered.
func TestClusterRabbitMQ(t *testing.T) {
	var s *sys
	const queue = proc.SubscriberID + "-orders" // Dapr's name: consumerID-topic
	start := func(t *testing.T) *sys {
		s = startSystem(t, options{broker: proc.BrokerRabbitMQCluster})
		return s
	}
	leader := func(t *testing.T) *cluster.RabbitNode {
		l, err := s.RabbitMQ.QueueLeader(t.Context(), queue)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	newLeader := func(t *testing.T, old *cluster.RabbitNode) {
		waitFor(t, time.Minute, "a new leader of the orders queue", func() bool {
			l, err := s.RabbitMQ.QueueLeader(t.Context(), queue)
			return err == nil && l != old
		})
	}
	healthy := func(t *testing.T) {
		if err := s.RabbitMQ.WaitHealthy(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	idle := func(t *testing.T) bool {
		ok, err := s.RabbitMQ.QueueIdle(t.Context(), queue)
		return err == nil && ok
	}
	runCluster(t, "rabbitmq", start, idle, []clusterFault{
		{"queue leader killed", func(t *testing.T) {
			old := leader(t)
			old.Kill()
			newLeader(t, old)
			if err := old.Start(); err != nil { // back, so that the queue has all three members again
				t.Fatal(err)
			}
			healthy(t)
		}},
		{"queue leader cut off for 15s", func(t *testing.T) {
			old := leader(t)
			if err := old.Host.Cut(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(15 * time.Second) // the host stays cut off: the fault itself
			if err := old.Host.Heal(); err != nil {
				t.Fatal(err)
			}
			healthy(t)
			// The queue's Raft elects a new leader within seconds of the
			// cut, but the queue's record (which the API reads) is only
			// updated once the cluster's database is whole again: look
			// after the heal.
			newLeader(t, old)
		}},
		{"rolling restart", func(t *testing.T) {
			for _, n := range s.RabbitMQ.Nodes {
				if err := n.Restart(); err != nil {
					t.Fatal(err)
				}
				healthy(t)
			}
		}},
	})
}

// clusterFault is one cluster scenario's fault, run a third of the way
// into publishing.
type clusterFault struct {
	name  string
	fault func(t *testing.T)
}

// runCluster runs each fault on a cluster and system of its own (start),
// then prints the table of outcomes (and writes it to CLUSTER_REPORT,
// appended: `make cluster` runs every broker).
//
// idle reports whether the broker holds nothing for the subscriber: nothing
// unread, nothing delivered and unacknowledged.
func runCluster(t *testing.T, broker string, start func(t *testing.T) *sys, idle func(t *testing.T) bool, faults []clusterFault) {
	var rows []clusterRow
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			rows = append(rows, clusterScenario(t, broker, f.name, start(t), func() bool { return idle(t) }, f.fault))
		})
	}
	var b strings.Builder
	fmt.Fprintln(&b, "| broker | scenario | orders | fault took | drained after | lost | duplicate effects |")
	fmt.Fprintln(&b, "|---|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f s | %.0f s | %d | %d |\n", broker, r.scenario, r.orders, r.fault.Seconds(), r.drained.Seconds(), r.lost, r.dups)
	}
	t.Log("\n" + b.String())
	if f := os.Getenv("CLUSTER_REPORT"); f != "" {
		out, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = out.WriteString(b.String() + "\n")
			out.Close()
		}
		if err != nil {
			t.Error(err)
		}
	}
}

// waitSettled polls until all n orders are processed and the broker is
// idle, or — an order that was lost never comes — until the broker is idle
// and nothing has moved for a minute (past every broker's redelivery time);
// after limit it fails the test, saying how far it got since what.
func waitSettled(t *testing.T, limit time.Duration, since string, n int, processed func() int, idle func() bool) {
	t.Helper()
	last, lastChange := -1, time.Now()
	for deadline := time.Now().Add(limit); ; time.Sleep(100 * time.Millisecond) {
		got := processed()
		if got != last {
			last, lastChange = got, time.Now()
		}
		if idle() && (got >= n || time.Since(lastChange) > time.Minute) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("not drained %s after %s: %d of %d processed, broker idle: %v", limit, since, got, n, idle())
			return
		}
	}
}

// clusterRow is one cluster scenario's outcome.
type clusterRow struct {
	scenario       string
	orders         int
	fault, drained time.Duration
	lost, dups     int
}

// clusterScenario publishes the orders to s's two subscriber replicas,
// runs fault a third of the way in, and checks that every acknowledged
// order was processed once.
func clusterScenario(t *testing.T, broker, name string, s *sys, idle func() bool, fault func(*testing.T)) clusterRow {
	n := testutil.EnvInt(t, "CLUSTER_ORDERS", clusterOrders)
	second := s.addSubscriber(proc.SubscriberID, "subscriber-2", nil)
	nodes := []*node{s.first(), second}
	processed := func() int {
		seen := map[int64]bool{}
		for _, nd := range nodes {
			counts, _, _ := nd.received.snapshot()
			for id := range counts {
				seen[id] = true
			}
		}
		return len(seen)
	}

	rate := max(n/20, 1) // twenty seconds of publishing
	pub, err := s.StartPublisher(func(c *publisher.Config) { c.Count, c.Rate, c.Attempts = n, float64(rate), 60 })
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	waitFor(t, time.Minute, "a third of the orders processed", func() bool { return processed() >= n/3 })
	start := time.Now()
	fault(t)
	faultTook := time.Since(start)
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatalf("publisher: %v (every publish must be acknowledged in the end)\n%s", err, pub.Tail())
	}
	// Entries stranded with the dead primary's clients come back after
	// processingTimeout (30 s).
	waitSettled(t, 4*time.Minute, "the fault began", n, processed, idle)
	drained := time.Since(start)

	lost, dups := 0, 0
	total := map[int64]int{}
	for _, nd := range nodes {
		counts, _, bad := nd.received.snapshot()
		if len(bad) > 0 {
			t.Errorf("%s printed lines that do not decode: %q", nd.Node.Name, bad)
		}
		for id, c := range counts {
			total[id] += c
		}
	}
	for id := range int64(n) {
		switch c := total[id]; {
		case c == 0:
			lost++
		case c > 1:
			dups++
		}
	}
	t.Logf("%s, %s: %d orders; the fault took %s; drained %s after it began; lost %d, duplicate effects %d",
		broker, name, n, faultTook.Round(time.Millisecond), drained.Round(time.Second), lost, dups)
	if lost > 0 || dups > 0 {
		t.Errorf("%d acknowledged orders lost, %d processed twice in the fault", lost, dups)
	}
	if dl := s.countKeys("statestore||subscriber/deadletter/*"); dl != 0 {
		t.Errorf("%d dead letters, want none", dl)
	}
	return clusterRow{scenario: name, orders: n, fault: faultTook, drained: drained, lost: lost, dups: dups}
}
