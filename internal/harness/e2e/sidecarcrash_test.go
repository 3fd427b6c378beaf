package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
	"dapr-pub-sub/internal/testutil"
)

// crashOrders is how many orders the sidecar crash publishes on each
// broker (CRASH_ORDERS to change it).
const crashOrders = 1000

// TestSidecarCrash is one fault, run unchanged on every broker behind the
// "pubsub" component (and on the clustered RabbitMQ): a burst of orders
// into a subscriber slowed to 50 ms an order, so that its daprd holds many
// of them at once, every 10th failing once; a quarter of the way in, the
// subscriber's daprd is killed with SIGKILL and started again 2 s later.
// A broker that let the dead daprd's messages go — acknowledged before the
// app answered — loses them here. Every order must be processed exactly
// once, none dead-lettered, and the broker left holding nothing for the
// subscriber where it can tell (Redis, JetStream, RabbitMQ).
func TestSidecarCrash(t *testing.T) {
	brokers := brokersUnderTest(t)
	if os.Getenv("BROKER") == "" {
		brokers = slices.Concat(brokers, []string{proc.BrokerRabbitMQCluster})
	}
	var rows []crashRow
	for _, broker := range brokers {
		t.Run(broker, func(t *testing.T) { rows = append(rows, sidecarCrash(t, broker)) })
	}
	var b strings.Builder
	fmt.Fprintln(&b, "| broker | orders | processed before the kill | processed | lost | processed twice | redelivered and absorbed | drained after the kill |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %.0f s |\n", r.broker, r.orders, r.atKill, r.processed, r.lost, r.twice, r.dups, r.drained.Seconds())
	}
	t.Log("\n" + b.String())
}

// crashRow is one broker's outcome of the sidecar crash.
type crashRow struct {
	broker                                 string
	orders, atKill, processed, lost, twice int
	dups                                   int
	drained                                time.Duration
}

func sidecarCrash(t *testing.T, broker string) crashRow {
	n := testutil.EnvInt(t, "CRASH_ORDERS", crashOrders)
	s := startSystem(t, options{broker: broker, sub: func(c *subscriber.Config) { c.Faults.FailFirstEvery, c.Faults.Delay = 10, 50*time.Millisecond }})
	idle := s.brokerIdle(broker)
	pub, err := s.StartPublisher(func(c *publisher.Config) { c.Count, c.Interval, c.Attempts = n, 2*time.Millisecond, 60 })
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Stop(time.Second)
	waitFor(t, 2*time.Minute, "a quarter of the orders processed", func() bool { return s.received.distinct() >= n/4 })
	if pub.Exited() {
		t.Log("the publisher finished before the kill: the burst was faster than the app")
	}
	atKill := s.received.distinct()
	s.Sub.Daprd.Signal(syscall.SIGKILL)
	_ = waitExit(t, s.Sub.Daprd.Process) // killed: the exit error is the point
	killed := time.Now()
	time.Sleep(2 * time.Second) // down for a while, as a crashed sidecar is: the fault itself
	restart(t, s.Sub.Daprd.Process)
	if err := s.Sub.Daprd.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatalf("publisher: %v (every publish must be acknowledged in the end)\n%s", err, pub.Tail())
	}
	processed := func() int { return s.countKeys("statestore||subscriber/order/*") }
	waitSettled(t, 4*time.Minute, "the kill", n, processed, idle)
	drained := time.Since(killed)
	lost := s.checkProcessedOnce(proc.SubscriberID, n)
	twice := 0
	counts, _, bad := s.received.snapshot()
	if len(bad) > 0 {
		t.Errorf("the subscriber printed lines that do not decode: %q", bad)
	}
	for id, c := range counts {
		if c > 1 {
			twice++
			t.Errorf("order %d printed %d times: its effect ran more than once", id, c)
		}
	}
	if dl := len(s.deadLetterIndex()); dl != 0 {
		t.Errorf("%d dead letters, want none: every order fails at most once", dl)
	}
	dups := 0
	for _, l := range s.received.logLines() {
		if strings.Contains(l, "Duplicate delivery") {
			dups++
		}
	}
	r := crashRow{broker: broker, orders: n, atKill: atKill, processed: processed(), lost: lost, twice: twice, dups: dups, drained: drained}
	t.Logf("%s: %d orders, %d processed before the kill; processed %d, lost %d, processed twice %d, %d redeliveries absorbed, drained %s after the kill",
		broker, n, atKill, r.processed, lost, twice, dups, drained.Round(time.Second))
	return r
}

// brokerIdle returns a check that the broker holds nothing for the
// subscriber — nothing unread, nothing delivered and unacknowledged —
// where the broker lets a client see it: Redis (the group's pending
// entries and lag), JetStream (the durable consumer), RabbitMQ (the
// queue; the single node without its management plugin shows the ready
// messages only). MQTT and Kafka (kfake) show nothing of the kind from
// outside: true there, and the records alone judge.
func (s *sys) brokerIdle(broker string) func() bool {
	ctx := s.t.Context()
	queue := proc.SubscriberID + "-orders" // Dapr's name: consumerID-topic
	switch broker {
	case proc.BrokerRedis:
		return func() bool { return s.pending("orders") == 0 && s.lag("orders") == 0 }
	case proc.BrokerJetStream:
		return func() bool {
			ok, err := s.JetStream.ConsumerIdle(ctx, "orders", proc.SubscriberID)
			return err == nil && ok
		}
	case proc.BrokerRabbitMQCluster:
		return func() bool {
			ok, err := s.RabbitMQ.QueueIdle(ctx, queue)
			return err == nil && ok
		}
	case proc.BrokerRabbitMQ:
		return func() bool {
			conn, err := amqp.Dial("amqp://guest:guest@" + s.Broker.Addr)
			if err != nil {
				return false
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				return false
			}
			q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
			return err == nil && q.Messages == 0
		}
	default:
		return func() bool { return true }
	}
}
