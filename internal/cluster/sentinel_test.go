package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"

	"dapr-pub-sub/internal/hosts"
)

func startSentinel(t *testing.T, opts SentinelOptions) *Sentinel {
	t.Helper()
	n, out := testNet(t, "rs")
	if opts.Password == "" {
		opts.Password = "test-password"
	}
	opts.Out = out
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

// TestPlannedFailoverKeepsEveryWrite: a writer appends numbers as fast as
// it can through a client that follows the Sentinels, retrying each until
// it is acknowledged, while Failover moves the primary; every
// acknowledged number is on the new primary, once, in order. (With a bare
// SENTINEL FAILOVER in its place, three runs of three lost 1,400 to 2,200
// acknowledged writes: the clients write to the old primary until the
// Sentinels announce the switch.)
func TestPlannedFailoverKeepsEveryWrite(t *testing.T) {
	s := startSentinel(t, SentinelOptions{})
	ctx := t.Context()
	c := s.Client()
	defer c.Close()
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if c.RPush(ctx, "acked", n).Err() == nil {
				n++
			}
		}
	}()
	for n := int64(0); n < 100; {
		n, _ = c.LLen(ctx, "acked").Result() // some writes before the failover
	}
	np, err := s.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if np != s.Nodes[1] {
		t.Fatalf("new primary %s, want the replica %s", np.Addr, s.Nodes[1].Addr)
	}
	for before, _ := c.LLen(ctx, "acked").Result(); ; { // and some after
		if n, _ := c.LLen(ctx, "acked").Result(); n >= before+100 {
			break
		}
	}
	close(stop)
	acked := <-done
	if _, err := s.WaitSettled(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.nodeClient(np).LRange(ctx, "acked", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A write whose acknowledgement was lost may be there twice (the
	// client retried it); none acknowledged may be missing.
	next := 0
	for _, v := range got {
		switch v {
		case strconv.Itoa(next):
			next++
		case strconv.Itoa(next - 1): // the retried one
		default:
			t.Fatalf("after %d, %s: the list is out of order (%d entries)", next-1, v, len(got))
		}
	}
	if next != acked {
		t.Fatalf("%d writes acknowledged, the new primary has 0..%d", acked, next-1)
	}
	t.Logf("%d writes acknowledged through the failover, all on the new primary", acked)
}

// TestJetStreamKeepsMessagesThroughALeaderKill: a three-node cluster with
// a replicated stream; a message published before the stream leader is
// killed is still there on the new leader, and publishing goes on.
func TestJetStreamKeepsMessagesThroughALeaderKill(t *testing.T) {
	n, out := testNet(t, "js")
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

// TestRabbitMQQuorumQueueSurvivesALeaderKill: three nodes form one
// cluster; a quorum queue gets a member on each; a message confirmed
// before its leader is killed is still there, through the balancer, on
// the new leader.
func TestRabbitMQQuorumQueueSurvivesALeaderKill(t *testing.T) {
	n, out := testNet(t, "rq")
	rq, err := StartRabbitMQ(t.Context(), n, "orders", "test-password", out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rq.Stop)
	ch := amqpChannel(t, rq)
	if _, err := ch.QueueDeclare("q", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		t.Fatal(err)
	}
	publish := func(ch *amqp.Channel, body string) error {
		c, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", "q", true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
		if err != nil {
			return err
		}
		ok, err := c.WaitContext(t.Context())
		if err != nil {
			return fmt.Errorf("not confirmed: %w", err)
		}
		if !ok {
			return errors.New("nacked")
		}
		return nil
	}
	if err := publish(ch, "before"); err != nil {
		t.Fatal(err)
	}
	leader, err := rq.QueueLeader(t.Context(), "q")
	if err != nil {
		t.Fatal(err)
	}
	leader.Kill()
	deadline := time.Now().Add(time.Minute)
	for {
		ch := amqpChannel(t, rq)
		if err := publish(ch, "after"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no publish confirmed a minute after the leader was killed: %v", err)
		}
	}
	for _, want := range []string{"before", "after"} {
		m, ok, err := amqpChannel(t, rq).Get("q", true)
		if err != nil || !ok || string(m.Body) != want {
			t.Fatalf("get: %q, %v, %v; want %q", m.Body, ok, err, want)
		}
	}
	if nl, err := rq.QueueLeader(t.Context(), "q"); err != nil || nl == leader {
		t.Errorf("leader after the kill: %v, %v; want another node", nl, err)
	}
}

// amqpChannel opens a connection through rq's balancer, closed with the
// test, and a channel on it in confirm mode.
func amqpChannel(t *testing.T, rq *RabbitMQ) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(rq.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return ch
}

// testNet makes test hosts' net name, removed with the test, and the
// writer for the cluster's output: the test's stderr with -v.
func testNet(t *testing.T, name string) (*hosts.Net, io.Writer) {
	t.Helper()
	n, err := hosts.New(name, hosts.DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if testing.Verbose() {
		return n, os.Stderr
	}
	return n, io.Discard
}
