package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber"
	"dapr-pub-sub/internal/subscriber/handler"
)

// ordered is the subscriber's ordered mode.
func ordered(c *subscriber.Config) { c.Ordered = true }

// TestOrderedLives: orders' lives of four events (created, paid,
// shipped, delivered), published shuffled within runs of 64 by two
// publishers (each half of the events), consumed by three subscriber
// instances in one consumer group, through faults: every order's events are
// applied in sequence, each once, none lost — read from each order's life
// in the store (its applied log, event by event) and from the lines
// printed. On Redis 1,000 orders through a subscriber kill -9, its daprd's
// kill -9 and a 5 s Redis freeze; on RabbitMQ and the JetStream cluster 300
// orders through the two kills (the ordered mode is the app's: the same on
// every broker).
func TestOrderedLives(t *testing.T) {
	for _, tc := range []struct {
		broker string
		orders int
		rate   float64 // per publisher
		freeze bool
	}{
		{proc.BrokerRedis, 1000, 150, true},
		{proc.BrokerRabbitMQ, 300, 60, false},
		{proc.BrokerJetStream, 300, 60, false},
	} {
		t.Run(tc.broker, func(t *testing.T) { orderedLives(t, tc.broker, tc.orders, tc.rate, tc.freeze) })
	}
}

func orderedLives(t *testing.T, broker string, orders int, rate float64, freeze bool) {
	const events = 4
	s := startSystem(t, options{broker: broker, sub: ordered})
	idle := s.brokerIdle(broker)
	replicas := []*node{s.first(),
		s.addSubscriber(proc.SubscriberID, "subscriber-2", ordered),
		s.addSubscriber(proc.SubscriberID, "subscriber-3", ordered)}
	var pubs []*proc.Process
	for _, share := range []string{"1/2", "2/2"} {
		p, err := s.StartPublisher(func(c *publisher.Config) {
			c.Count, c.Events, c.Shuffle, c.Share, c.Rate, c.Attempts = orders, events, 64, share, rate, 60
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(time.Second)
		pubs = append(pubs, p)
	}
	applied := func() int {
		n := 0
		for _, r := range replicas {
			n += r.received.events()
		}
		return n
	}
	victim := replicas[1]
	waitFor(t, 2*time.Minute, "a fifth applied", func() bool { return applied() >= orders*events/5 })
	killedAt := time.Now()
	victim.App.Signal(syscall.SIGKILL)
	_ = waitExit(t, victim.App) // killed: the exit error is the point
	restart(t, victim.App)
	waitFor(t, 2*time.Minute, "two fifths applied", func() bool { return applied() >= 2*orders*events/5 })
	daprdKilledAt := time.Now()
	killAndRestartSidecar(t, victim.Daprd)
	if freeze {
		waitFor(t, 2*time.Minute, "three fifths applied", func() bool { return applied() >= 3*orders*events/5 })
		s.Redis.Process().Signal(syscall.SIGSTOP)
		time.Sleep(5 * time.Second) // the fault is the freeze's length, not a wait for readiness
		s.Redis.Process().Signal(syscall.SIGCONT)
	}
	for _, p := range pubs {
		if p.Exited() {
			t.Fatal("a publisher finished before the last fault: it would not be mid-stream")
		}
	}
	for _, p := range pubs {
		if err := p.Wait(t.Context()); err != nil {
			t.Fatalf("publisher: %v\n%s", err, p.Tail())
		}
	}
	var lives map[int64]store.Life
	waitFor(t, 3*time.Minute, "every life complete and nothing pending", func() bool {
		lives = s.lives(orders)
		complete := 0
		for _, l := range lives {
			if len(l.Applied) == events {
				complete++
			}
		}
		return complete == orders && idle()
	})
	wrong, unprinted := 0, 0
	for id := range int64(orders) {
		l := lives[id]
		var got []string
		for _, st := range l.Applied {
			got = append(got, st.Type+st.Rejected)
		}
		if !slices.Equal(got, order.Life) || len(l.Held) != 0 {
			wrong++
			if wrong <= 5 {
				t.Errorf("order %d's life: applied %v, held %d; want %v, none", id, got, len(l.Held), order.Life)
			}
		}
	}
	// The lines: none printed twice over the replicas, and each replica's
	// lines of one order in sequence.
	printed := map[string]int{}
	late := 0 // applied out of arrival order
	for i, r := range replicas {
		for id, seqs := range r.received.sequences() {
			if !slices.IsSorted(seqs) {
				t.Errorf("replica %d printed order %d's events as %v, out of sequence", i+1, id, seqs)
			}
			for _, seq := range seqs {
				printed[fmt.Sprintf("%d/%d", id, seq)]++
			}
		}
	}
	twice := 0
	for ev, n := range printed {
		if n > 1 {
			twice++
			t.Errorf("event %s printed %d times", ev, n)
		}
	}
	for id, l := range lives {
		for i, st := range l.Applied {
			if st.Late {
				late++
			}
			if printed[fmt.Sprintf("%d/%d", id, i+1)] == 0 {
				// Only a kill between a write and its line may leave an event
				// unprinted — its effect in the store, its log line lost: the
				// app's kill, or its daprd's mid-call when the redelivery goes
				// to another instance (in the same process, store.Lives'
				// unsure writes print it). Anything else is a line lost.
				if !justBefore(st.At, killedAt) && !justBefore(st.At, daprdKilledAt) {
					t.Errorf("order %d event %d, applied at %s (the app killed at %s, its daprd at %s), was never printed",
						id, i+1, st.At.Format(time.RFC3339Nano), killedAt.Format(time.RFC3339Nano), daprdKilledAt.Format(time.RFC3339Nano))
				}
				unprinted++
			}
		}
	}
	// daprd routed each type after the first to its own route (the CEL
	// rules of handler.TypeRoutes), over the replicas still running their
	// first process (the killed app's counts went with it).
	routed := map[string]float64{}
	for i, r := range replicas {
		if i == 1 {
			continue
		}
		_, metrics := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(r.Port)+"/metrics")
		for _, l := range strings.Split(metrics, "\n") {
			var route string
			var n float64
			if _, err := fmt.Sscanf(l, `orders_routed_deliveries_total{route=%q} %g`, &route, &n); err == nil {
				routed[route] += n
			}
		}
	}
	for _, r := range append([]string{handler.OrdersRoute}, handler.TypeRoutes[0].Path, handler.TypeRoutes[1].Path, handler.TypeRoutes[2].Path) {
		if routed[r] == 0 {
			t.Errorf("no delivery routed to %s: %v", r, routed)
		}
	}
	t.Logf("deliveries by route (two replicas): %v", routed)
	t.Logf("%s: %d orders × %d events over 3 replicas: %d lives wrong, %d events printed twice, %d of %d lines printed (%d unprinted, each written just before a kill: the effect is in the store, its line lost), %d applied out of arrival order",
		broker, orders, events, wrong, twice, len(printed), orders*events, unprinted, late)
	if late == 0 {
		t.Error("no event was applied out of arrival order: the shuffle did not reach the subscriber, the test proves nothing")
	}
}

// lives reads the ordered mode's life of each order 0…n-1 from Redis
// (Dapr's Redis state store keeps a value as the hash field "data").
func (s *sys) lives(n int) map[int64]store.Life {
	ctx := s.t.Context()
	pipe := s.redis.Pipeline()
	for id := range n {
		pipe.HGet(ctx, "statestore||"+proc.SubscriberID+"/life/"+strconv.Itoa(id), "data")
	}
	cmds, _ := pipe.Exec(ctx)
	out := make(map[int64]store.Life, n)
	for id, c := range cmds {
		var l store.Life
		if v := c.(interface{ Val() string }).Val(); v != "" && json.Unmarshal([]byte(v), &l) == nil {
			out[int64(id)] = l
		}
	}
	return out
}

// TestOrderedGapsAndBadInput: in the ordered mode, an event withheld on
// purpose leaves its successors held, then dead-lettered with the reason
// after the gap time; the withheld event published late is applied, and
// the replay applies the rest in sequence. Bad input — seq 0, a sequence
// beyond the hold limit, an unknown type, a forbidden transition, the
// same (order, sequence) with other content — is each a dead letter with
// its reason; nothing is lost or retried. On the http channel (the other
// tests of the mode run on grpc), where an order published as text/plain
// — data no JSON object, which the routing rules must let through to the
// default route — is applied too.
func TestOrderedGapsAndBadInput(t *testing.T) {
	s := startSystem(t, options{channel: system.ChannelHTTP, sub: func(c *subscriber.Config) { c.Ordered, c.GapTimeout, c.HoldLimit = true, 2*time.Second, 5 }})
	publish := func(body string) {
		t.Helper()
		if code, resp := s.publishHTTP("pubsub", "orders", "application/json", body); code/100 != 2 {
			t.Fatalf("publish %s: %d %s", body, code, resp)
		}
	}
	ev := func(id, seq int64, typ, msg string) string {
		return fmt.Sprintf(`{"id":%d,"message":%q,"seq":%d,"type":%q}`, id, msg, seq, typ)
	}
	// Order 7 without its event 2.
	publish(ev(7, 1, order.TypeCreated, "m"))
	publish(ev(7, 3, order.TypeShipped, "m"))
	publish(ev(7, 4, order.TypeDelivered, "m"))
	waitFor(t, time.Minute, "events 3 and 4 given up on after the gap time", func() bool { return len(s.deadLetterIndex()) == 2 })
	for _, dl := range s.listDeadLetters() {
		if !strings.HasPrefix(dl.Reason, "order 7: event ") || !strings.HasSuffix(dl.Reason, "for event 2") || !strings.Contains(dl.Reason, " waited ") {
			t.Errorf("gap dead letter %s: reason %q", dl.EventID, dl.Reason)
		}
	}
	publish(ev(7, 2, order.TypePaid, "m")) // late
	waitFor(t, time.Minute, "event 2 applied", func() bool { return s.received.events() == 2 })
	if out := s.deadletters("replay"); !strings.Contains(out, "2 dead letter(s) replayed") {
		t.Fatalf("replay:\n%s", out)
	}
	waitFor(t, time.Minute, "the replayed events applied", func() bool { return s.received.events() == 4 })
	if got := fmt.Sprint(s.received.sequences()[7]); got != "[1 2 3 4]" {
		t.Errorf("order 7 printed as %s, want [1 2 3 4]", got)
	}

	// Bad input, each kept with its reason.
	publish(`{"id":8,"message":"m","seq":0}`)
	publish(ev(8, 1, order.TypeCreated, "m"))
	publish(ev(8, 9, order.TypeShipped, "m")) // 7 ahead of event 2: the hold limit is 5
	publish(ev(8, 2, "order.lost", "m"))
	publish(ev(9, 1, order.TypeCreated, "m"))
	publish(ev(9, 2, order.TypeCancelled, "m"))
	publish(ev(9, 3, order.TypeShipped, "m"))
	publish(ev(9, 2, order.TypeCancelled, "other"))
	want := []string{
		"seq must be ≥ 1, got 0",
		"order 8: event 9 (order.shipped) is 7 ahead of event 2, which the order waits for; the hold limit is 5",
		`type "order.lost" is not an order event type`,
		"order 9: event 3: order.shipped is not allowed after order.cancelled",
		"conflicting duplicate of order 9 event 2 (order.cancelled): message differs (the first one was decided and stays)",
	}
	var reasons []string
	waitFor(t, time.Minute, "five dead letters with their reasons", func() bool {
		reasons = nil
		for _, dl := range s.listDeadLetters() {
			reasons = append(reasons, dl.Reason)
		}
		return len(reasons) == len(want) && s.pending("orders") == 0 && s.pending("orders-deadletter") == 0
	})
	for _, w := range want {
		if !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, w) }) {
			t.Errorf("no dead letter says %q; they say:\n%s", w, strings.Join(reasons, "\n"))
		}
	}
	if got := fmt.Sprint(s.received.sequences()[9]); got != "[1 2]" {
		t.Errorf("order 9 printed as %s, want [1 2] (created, cancelled)", got)
	}
	if code, resp := s.publishHTTP("pubsub", "orders", "text/plain", `{"id":10,"message":"m"}`); code/100 != 2 {
		t.Fatalf("publish as text/plain: %d %s", code, resp)
	}
	waitFor(t, time.Minute, "the text/plain order applied", func() bool { return len(s.received.sequences()[10]) == 1 })
	if n := len(s.deadLetterIndex()); n != len(want) {
		t.Errorf("%d dead letters after the text/plain order, want %d", n, len(want))
	}
}

// justBefore reports whether at is within the second before kill: a write
// begun then may have landed with its process or sidecar killed before the
// answer.
func justBefore(at, kill time.Time) bool {
	d := kill.Sub(at)
	return d >= 0 && d <= time.Second
}
