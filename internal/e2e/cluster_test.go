package e2e

import (
	"strconv"
	"testing"
	"time"

	"dapr-pub-sub/internal/cluster"
	"dapr-pub-sub/internal/hosts"
	"dapr-pub-sub/internal/launcher"
)

// clusterOrders is how many orders each cluster scenario publishes
// (CLUSTER_ORDERS; `make cluster` raises it).
const clusterOrders = 1000

// TestClusterRedisSentinel: Redis with failover on three test hosts of
// our own (a primary, a replica, three Sentinels), both Redis components
// and the keeper following the primary through the Sentinels, and the
// subscriber as two replicas. The primary is killed (-9) a third of the
// way into publishing; the Sentinels promote the replica, the sidecars
// follow it, and every acknowledged order is processed once, nothing is
// left pending, nothing is dead-lettered.
//
// Redis replicates asynchronously: a write the primary acknowledged in
// the instant before it died may not have reached the replica. Such a
// loss would show here as a lost order (its stream entry) or a duplicate
// effect (its record); the test reports either.
func TestClusterRedisSentinel(t *testing.T) {
	n := envInt(t, "CLUSTER_ORDERS", clusterOrders)
	nw, err := hosts.New("e2e", hosts.DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	sen, err := cluster.StartSentinel(t.Context(), nw, cluster.SentinelOptions{Password: "cluster-test-password", Out: &testLog{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sen.Stop)
	s := startSystem(t, options{sentinel: sen})
	second := s.addSubscriber(launcher.SubscriberID, "subscriber-2", nil)
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

	rate := max(n/5, 1) // five seconds of publishing
	pub, err := s.StartPublisher([]string{"-count", strconv.Itoa(n), "-rate", strconv.Itoa(rate), "-attempts", "60"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	waitFor(t, time.Minute, "a third of the orders processed", func() bool { return processed() >= n/3 })
	old := sen.Nodes[0]
	killed := time.Now()
	old.Kill()
	np, err := sen.WaitFailedOver(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	failover := time.Since(killed)
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatalf("publisher: %v (every publish must be acknowledged in the end)\n%s", err, pub.Tail())
	}
	// Entries stranded with the dead primary's clients come back after
	// processingTimeout (30 s): wait for every order, or — an order the
	// failover lost never comes — for nothing pending and no progress in
	// a minute.
	last, lastChange := -1, time.Now()
	for deadline := time.Now().Add(4 * time.Minute); ; {
		got := processed()
		if got != last {
			last, lastChange = got, time.Now()
		}
		idle := s.pending("orders") == 0 && s.lag("orders") == 0
		if idle && (got >= n || time.Since(lastChange) > time.Minute) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained 4 min after the kill: %d of %d processed, %d pending", got, n, s.pending("orders"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(killed)

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
	t.Logf("redis-sentinel, primary killed: %d orders, failover to %s in %s, drained %s after the kill; lost %d, duplicate effects %d",
		n, np.Addr, failover.Round(time.Millisecond), drained.Round(time.Second), lost, dups)
	if lost > 0 || dups > 0 {
		t.Errorf("%d acknowledged orders lost, %d processed twice: Redis's asynchronous replication lost acknowledged writes in the failover", lost, dups)
	}
	if dl := s.countKeys("statestore||subscriber/deadletter/*"); dl != 0 {
		t.Errorf("%d dead letters, want none", dl)
	}
}
