package cluster

import (
	"io"
	"os"
	"testing"

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
