package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/cluster"
	"dapr-pub-sub/internal/hosts"
	"dapr-pub-sub/internal/launcher"
)

// clusterOrders is how many orders each cluster scenario publishes
// (CLUSTER_ORDERS; `make cluster` raises it).
const clusterOrders = 1000

// TestClusterRedisSentinel runs the cluster scenarios on Redis with
// failover on three test hosts of our own (a primary, a replica, three
// Sentinels): both Redis components and the keeper follow the primary
// through the Sentinels, and the subscriber runs as two replicas. While
// the orders are published (over 20 s), a third of the way in:
//
//   - primary killed: kill -9; the Sentinels promote the replica;
//   - primary cut off: its host off the network for 15 s (its Sentinel
//     with it), then healed; the Sentinels fail over and demote it;
//   - rolling restart: every process restarted one at a time, as an
//     operator would — the replica, the three Sentinels, then a planned
//     failover (SENTINEL FAILOVER) and the old primary, now a replica.
//
// Every acknowledged order must be processed once, nothing left pending,
// nothing dead-lettered. Redis replicates asynchronously: a write the
// primary acknowledged in the instant before it was lost may not have
// reached the replica, which would show here as a lost order (its stream
// entry) or a duplicate effect (its record).
func TestClusterRedisSentinel(t *testing.T) {
	var rows []clusterRow
	for _, sc := range []struct {
		name  string
		fault func(t *testing.T, sen *cluster.Sentinel)
	}{
		{"primary killed", func(t *testing.T, sen *cluster.Sentinel) {
			old := sen.Nodes[0]
			old.Kill()
			if _, err := sen.WaitFailedOver(t.Context(), old); err != nil {
				t.Fatal(err)
			}
		}},
		{"primary cut off for 15s", func(t *testing.T, sen *cluster.Sentinel) {
			old := sen.Nodes[0]
			if err := old.Host.Cut(); err != nil {
				t.Fatal(err)
			}
			if _, err := sen.WaitFailedOver(t.Context(), old); err != nil {
				t.Fatal(err)
			}
			time.Sleep(15 * time.Second) // the host stays cut off: the fault itself
			if err := old.Host.Heal(); err != nil {
				t.Fatal(err)
			}
			if p, err := sen.WaitSettled(t.Context()); err != nil || p == old {
				t.Fatalf("after healing: primary %v, %v; want the old one demoted to replica", p, err)
			}
		}},
		{"rolling restart", func(t *testing.T, sen *cluster.Sentinel) {
			step := func(what string, do func() error) {
				if err := do(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if _, err := sen.WaitSettled(t.Context()); err != nil {
					t.Fatalf("after %s: %v", what, err)
				}
			}
			step("restarting the replica", sen.Nodes[1].Restart)
			for i := range sen.Sentinels {
				step("restarting sentinel "+strconv.Itoa(i+1), func() error { return sen.RestartSentinel(i) })
			}
			old := sen.Nodes[0]
			step("failing over", func() error {
				_, err := sen.Failover(t.Context())
				return err
			})
			step("restarting the old primary", old.Restart)
		}},
	} {
		t.Run(sc.name, func(t *testing.T) { rows = append(rows, clusterScenario(t, sc.name, sc.fault)) })
	}
	var b strings.Builder
	fmt.Fprintln(&b, "| broker | scenario | orders | fault took | drained after | lost | duplicate effects |")
	fmt.Fprintln(&b, "|---|---|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| redis-sentinel | %s | %d | %.1f s | %.0f s | %d | %d |\n", r.scenario, r.orders, r.fault.Seconds(), r.drained.Seconds(), r.lost, r.dups)
	}
	t.Log("\n" + b.String())
	if f := os.Getenv("CLUSTER_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
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

func clusterScenario(t *testing.T, name string, fault func(*testing.T, *cluster.Sentinel)) clusterRow {
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

	rate := max(n/20, 1) // twenty seconds of publishing
	pub, err := s.StartPublisher([]string{"-count", strconv.Itoa(n), "-rate", strconv.Itoa(rate), "-attempts", "60"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	waitFor(t, time.Minute, "a third of the orders processed", func() bool { return processed() >= n/3 })
	start := time.Now()
	fault(t, sen)
	faultTook := time.Since(start)
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
		idle := s.pending("orders") == 0 && s.allRead("orders")
		if idle && (got >= n || time.Since(lastChange) > time.Minute) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained 4 min after the fault began: %d of %d processed, %d pending", got, n, s.pending("orders"))
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	now := "unknown"
	if p, err := sen.Primary(t.Context()); err == nil {
		now = p.Addr
	}
	t.Logf("redis-sentinel, %s: %d orders; the fault took %s (primary now %s); drained %s after it began; lost %d, duplicate effects %d",
		name, n, faultTook.Round(time.Millisecond), now, drained.Round(time.Second), lost, dups)
	if lost > 0 || dups > 0 {
		t.Errorf("%d acknowledged orders lost, %d processed twice: Redis's asynchronous replication lost acknowledged writes in the failover", lost, dups)
	}
	if dl := s.countKeys("statestore||subscriber/deadletter/*"); dl != 0 {
		t.Errorf("%d dead letters, want none", dl)
	}
	return clusterRow{scenario: name, orders: n, fault: faultTook, drained: drained, lost: lost, dups: dups}
}

// allRead reports whether the subscriber's group has read every entry of
// stream: its last delivered id is the stream's last. (XINFO's lag is
// unknown after a failover — Redis cannot always count it then.)
func (s *sys) allRead(stream string) bool {
	if s.lag(stream) == 0 {
		return true
	}
	info, err := s.redis.XInfoStream(s.t.Context(), stream).Result()
	if err != nil {
		return false
	}
	groups, err := s.redis.XInfoGroups(s.t.Context(), stream).Result()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g.Name == launcher.SubscriberID {
			return g.LastDeliveredID == info.LastGeneratedID
		}
	}
	return false
}
