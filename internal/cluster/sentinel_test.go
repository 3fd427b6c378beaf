package cluster

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"dapr-pub-sub/internal/hosts"
)

func startSentinel(t *testing.T, opts SentinelOptions) *Sentinel {
	t.Helper()
	n, err := hosts.New("rs", hosts.DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if opts.Password == "" {
		opts.Password = "test-password"
	}
	if testing.Verbose() {
		opts.Out = os.Stderr
	} else {
		opts.Out = io.Discard
	}
	s, err := StartSentinel(t.Context(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// TestSentinelFailsOver: the pair comes up with the Sentinels agreeing;
// a write reaches the replica; the primary killed, the replica is promoted
// and takes writes through a client that follows the Sentinels.
func TestSentinelFailsOver(t *testing.T) {
	s := startSentinel(t, SentinelOptions{})
	ctx := t.Context()
	p, err := s.Primary(ctx)
	if err != nil || p != s.Nodes[0] {
		t.Fatalf("primary %v (%v), want %s", p, err, s.Nodes[0].Addr)
	}
	c := s.Client()
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
		t.Fatal(err)
	}
	s.Nodes[0].Kill()
	np, err := s.WaitFailedOver(ctx, s.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if np != s.Nodes[1] {
		t.Fatalf("new primary %s, want the replica %s", np.Addr, s.Nodes[1].Addr)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Errorf("after the failover k = %q, %v; want the replicated v", v, err)
	}
	if err := c.Set(ctx, "k2", "v2", 0).Err(); err != nil {
		t.Errorf("write after the failover: %v", err)
	}
}

// TestJetStreamKeepsMessagesThroughALeaderKill: a three-node cluster with
// a replicated stream; a message published before the stream leader is
// killed is still there on the new leader, and publishing goes on.
func TestJetStreamKeepsMessagesThroughALeaderKill(t *testing.T) {
	n, err := hosts.New("js", hosts.DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	out := io.Discard
	if testing.Verbose() {
		out = os.Stderr
	}
	js, err := StartJetStream(t.Context(), n, []string{"orders"}, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(js.Stop)
	nc, err := nats.Connect(js.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	jsc, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsc.Publish("orders", []byte("before")); err != nil {
		t.Fatal(err)
	}
	leader, err := js.StreamLeader(t.Context(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := jsc.Publish("orders", []byte("after"), nats.AckWait(time.Second))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish acknowledged 30 s after the leader was killed: %v", err)
		}
	}
	info, err := jsc.StreamInfo("orders")
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.Cluster.Leader == leader.Host.Name {
		t.Errorf("after the kill: %d messages, leader %s; want 2 and a new leader", info.State.Msgs, info.Cluster.Leader)
	}
}
