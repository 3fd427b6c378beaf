package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store/storetest"
)

// event is order id's event seq of the usual life.
func event(id, seq int64) order.Order {
	return order.New(id).Event(seq, order.Life[seq-1])
}

func kinds(v Verdict) string {
	var b strings.Builder
	b.WriteString(v.Kind)
	for _, d := range v.Decided {
		fmt.Fprintf(&b, " %d", d.Event.Sequence())
		if d.Step.Rejected != "" {
			b.WriteString("!")
		}
		if d.Step.Late {
			b.WriteString("L")
		}
	}
	return b.String()
}

func TestLifeOffer(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	l := Life{ID: 7}
	steps := []struct {
		e    order.Order
		want string
	}{
		{event(7, 3), "held"},
		{event(7, 3), "duplicate"},                               // held already, same content
		{event(7, 2), "held"},                                    // held out of order, kept sorted
		{event(7, 1), "applied 1L 2L 3L"},                        // fills the gap: all three, in sequence
		{event(7, 2), "duplicate"},                               // decided already
		{order.New(7).Event(2, order.TypeCancelled), "conflict"}, // same sequence, other type
		{event(7, 4), "applied 4"},
	}
	for i, s := range steps {
		if got := kinds(l.Offer(s.e, s.e.EventID(), now, 10)); got != s.want {
			t.Fatalf("step %d (%s): %s, want %s", i, s.e.Name(), got, s.want)
		}
	}
	if l.State != order.TypeDelivered || len(l.Applied) != 4 || l.Held != nil {
		t.Fatalf("life after the usual four: %+v", l)
	}
	other := event(7, 2)
	other.Message = "other"
	v := l.Offer(other, "x", now, 10)
	if v.Kind != VerdictConflict || !strings.Contains(v.Reason, "order 7 event 2 (order.paid): message differs (the first one was decided and stays)") {
		t.Errorf("conflicting message: %+v", v)
	}
}

func TestLifeRejectsAndLimits(t *testing.T) {
	now := time.Now()
	l := Life{ID: 3}
	cancelled := order.New(3).Event(2, order.TypeCancelled)
	shipped := order.New(3).Event(3, order.TypeShipped)
	l.Offer(shipped, "order-3-3", now, 10)
	l.Offer(event(3, 1), "order-3", now, 10)
	v := l.Offer(cancelled, "order-3-2", now, 10)
	if got := kinds(v); got != "applied 2L 3!L" {
		t.Fatalf("created, cancelled, then a held shipped: %s", got)
	}
	if r := v.Decided[1].Step.Rejected; r != "order 3: event 3: order.shipped is not allowed after order.cancelled" {
		t.Errorf("reason = %q", r)
	}
	if l.State != order.TypeCancelled || l.Next() != 4 {
		t.Errorf("a rejected event consumes its sequence and leaves the state: %s, next %d", l.State, l.Next())
	}
	far := Life{ID: 9}
	if v := far.Offer(event(9, 4), "e", now, 2); v.Kind != VerdictBeyond || !strings.Contains(v.Reason, "event 4 (order.delivered) is 3 ahead of event 1, which the order waits for; the hold limit is 2") {
		t.Errorf("beyond the limit: %+v", v)
	}
	if v := far.Offer(event(9, 3), "e", now, 2); v.Kind != VerdictHeld {
		t.Errorf("at the limit: %+v", v)
	}
	if x := far.Expire(now.Add(4*time.Minute), 5*time.Minute); x != nil {
		t.Errorf("expired before the gap time: %+v", x)
	}
	x := far.Expire(now.Add(5*time.Minute), 5*time.Minute)
	if len(x) != 1 || x[0].Reason != "order 9: event 3 (order.shipped) waited 5m0s for event 1" || far.Held != nil {
		t.Errorf("expired: %+v, held %+v", x, far.Held)
	}
}

func newLives(mem *storetest.Mem) *Lives {
	return New(mem, "statestore", "subscriber").Lives(100, "pubsub", "orders")
}

// TestLivesInSequenceUnderConcurrency: shuffled lives delivered by many
// goroutines of two processes (two Lives over one store), each event
// twice, apply every order's events once each, in sequence.
func TestLivesInSequenceUnderConcurrency(t *testing.T) {
	mem := &storetest.Mem{RedisStyle: true}
	procs := []*Lives{newLives(mem), newLives(mem)}
	const orders, events = 40, 4
	var all []order.Order
	for id := range int64(orders) {
		for seq := int64(1); seq <= events; seq++ {
			e := event(id, seq)
			all = append(all, e, e) // every event delivered twice
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var (
		mu      sync.Mutex
		applied = map[int64][]int64{}
		wg      sync.WaitGroup
	)
	work := make(chan order.Order)
	for w := range 8 {
		wg.Go(func() {
			for e := range work {
				v, err := procs[w%2].Offer(t.Context(), e, e.EventID(), nil)
				if err != nil {
					t.Error(err)
					continue
				}
				mu.Lock()
				for _, d := range v.Decided {
					applied[d.Event.ID] = append(applied[d.Event.ID], d.Event.Sequence())
				}
				mu.Unlock()
			}
		})
	}
	for _, e := range all {
		work <- e
	}
	close(work)
	wg.Wait()
	for id := range int64(orders) {
		if got := fmt.Sprint(applied[id]); got != "[1 2 3 4]" {
			t.Errorf("order %d applied %s, want [1 2 3 4]", id, got)
		}
		l, _, err := procs[0].read(t.Context(), id)
		if err != nil || l.State != order.TypeDelivered || len(l.Held) != 0 {
			t.Errorf("order %d's life: %+v, %v", id, l, err)
		}
	}
}

// TestLivesWriteThatLandedUnseen: a write whose call fails after the store
// applied it is recognised by its attempt, not taken for someone else's.
func TestLivesWriteThatLandedUnseen(t *testing.T) {
	mem := &storetest.Mem{}
	failed := false
	mem.FailAfterSave = func(key string) error {
		if strings.Contains(key, "/life/") && !failed {
			failed = true
			return storetest.ErrUnavailable
		}
		return nil
	}
	ls := newLives(mem)
	v, err := ls.Offer(t.Context(), event(5, 1), "order-5", nil)
	if err != nil || kinds(v) != "applied 1" {
		t.Fatalf("Offer = %s, %v; want applied 1 (the write landed)", kinds(v), err)
	}
	if v, _ := ls.Offer(t.Context(), event(5, 1), "order-5", nil); v.Kind != VerdictDuplicate {
		t.Fatalf("redelivery: %s", v.Kind)
	}
}

// TestLivesWriteThatLandedWhileTheStoreWentAway: a write that landed
// although its call failed, and could not be read back (the sidecar
// killed after it wrote), is completed by the order's next offer here: the
// redelivery of its event returns its verdict (its effects are done then),
// another event of the order gets them done first.
func TestLivesWriteThatLandedWhileTheStoreWentAway(t *testing.T) {
	for _, next := range []order.Order{event(6, 2), event(6, 3)} {
		mem := &storetest.Mem{}
		down, saves := false, 0
		mem.FailAfterSave = func(key string) error {
			if strings.Contains(key, "/life/") {
				if saves++; saves == 2 { // event 2's write lands, then the store goes
					down = true
					return storetest.ErrUnavailable
				}
			}
			return nil
		}
		mem.Fail = func(op, key string) error {
			if down && op == "get" {
				return storetest.ErrUnavailable
			}
			return nil
		}
		ls := newLives(mem)
		ctx := t.Context()
		if _, err := ls.Offer(ctx, event(6, 1), "order-6", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ls.Offer(ctx, event(6, 2), "order-6-2", nil); err == nil {
			t.Fatal("a write whose call failed and could not be read back is an error (the delivery is retried)")
		}
		mem.Fail = nil
		var effects []string
		v, err := ls.Offer(ctx, next, next.EventID(), func(v Verdict) { effects = append(effects, kinds(v)) })
		if err != nil {
			t.Fatal(err)
		}
		want := "[applied 2 applied 3]" // event 2's effects, then event 3's
		if next.Sequence() == 2 {
			want = "[applied 2]" // the redelivery completes it
		}
		if got := fmt.Sprint(effects); got != want || kinds(v) != "applied "+strconv.FormatInt(next.Sequence(), 10) {
			t.Errorf("then %s: effects %v, verdict %s; want %s", next.EventID(), effects, kinds(v), want)
		}
	}
}

// TestLivesFirstEventWritesWithoutReading: an order's first event from an
// order not seen is one insert-if-absent and no read; the same event from
// another process (the order exists) is read and found a duplicate.
func TestLivesFirstEventWritesWithoutReading(t *testing.T) {
	mem := &storetest.Mem{RedisStyle: true}
	gets := 0
	mem.Fail = func(op, key string) error {
		if op == "get" && strings.Contains(key, "/life/") {
			gets++
		}
		return nil
	}
	ctx := t.Context()
	if v, err := newLives(mem).Offer(ctx, event(3, 1), "order-3", nil); err != nil || v.Kind != VerdictApplied || gets != 0 {
		t.Fatalf("first event: %s, %v, %d reads; want applied and no read", kinds(v), err, gets)
	}
	if v, err := newLives(mem).Offer(ctx, event(3, 1), "order-3", nil); err != nil || v.Kind != VerdictDuplicate {
		t.Fatalf("the same event in another process: %s, %v; want a duplicate", kinds(v), err)
	}
	wrong := order.New(4).Event(1, order.TypePaid)
	ls := newLives(mem)
	if v, err := ls.Offer(ctx, wrong, "order-4", nil); err != nil || kinds(v) != "applied 1!" {
		t.Fatalf("a first event that is not allowed: %s, %v", kinds(v), err)
	}
	if dls, _ := ls.s.DeadLetters(ctx); len(dls) != 1 || !strings.Contains(dls[0].Reason, "order.paid before the order was created") {
		t.Fatalf("dead letters: %+v", dls)
	}
}

// TestLivesExpireOnlyWhenTheLifeEnds: a Life has no TTL while the order's
// life goes on, and the records' once it has ended.
func TestLivesExpireOnlyWhenTheLifeEnds(t *testing.T) {
	mem := &storetest.Mem{}
	ls := New(mem, "statestore", "subscriber").WithRetention(24*time.Hour, 0).Lives(100, "pubsub", "orders")
	key := ls.s.LifeKey(2)
	for seq := int64(1); seq <= 4; seq++ {
		if _, err := ls.Offer(t.Context(), event(2, seq), event(2, seq).EventID(), nil); err != nil {
			t.Fatal(err)
		}
		want := ""
		if seq == 4 {
			want = "90000" // 24 h + 1 h, as a record
		}
		if got := mem.TTL(key); got != want {
			t.Errorf("after event %d: TTL %q, want %q", seq, got, want)
		}
	}
}

// TestLivesStoreDown: a store that cannot be reached is an error (the
// delivery is retried), and a stale memory of another process's write is
// read again, not written over.
func TestLivesStoreDown(t *testing.T) {
	mem := &storetest.Mem{}
	a, b := newLives(mem), newLives(mem)
	ctx := t.Context()
	if _, err := a.Offer(ctx, event(1, 1), "order-1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Offer(ctx, event(1, 2), "order-1-2", nil); err != nil { // a's memory is stale now
		t.Fatal(err)
	}
	if v, err := a.Offer(ctx, event(1, 3), "order-1-3", nil); err != nil || kinds(v) != "applied 3" {
		t.Fatalf("after another process's write: %s, %v", kinds(v), err)
	}
	mem.Fail = func(string, string) error { return storetest.ErrUnavailable }
	if _, err := a.Offer(ctx, event(2, 1), "order-2", nil); !errors.Is(err, storetest.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
}

// TestLivesSweep: a gap that does not fill sends the held events to the
// dead letters with the reason, once; the order then waits as before.
func TestLivesSweep(t *testing.T) {
	mem := &storetest.Mem{}
	ls := newLives(mem)
	ctx := context.Background()
	for _, e := range []order.Order{event(42, 1), event(42, 3), event(42, 4)} {
		if _, err := ls.Offer(ctx, e, e.EventID(), nil); err != nil {
			t.Fatal(err)
		}
	}
	sw, err := ls.Sweep(ctx, time.Hour)
	if err != nil || sw.Held != 2 || len(sw.Expired) != 0 {
		t.Fatalf("sweep before the gap time: %+v, %v", sw, err)
	}
	sw, err = ls.Sweep(ctx, 0)
	if err != nil || sw.Held != 0 || len(sw.Expired) != 2 {
		t.Fatalf("sweep after the gap time: %+v, %v", sw, err)
	}
	dls, err := ls.s.DeadLetters(ctx)
	if err != nil || len(dls) != 2 || !strings.HasPrefix(dls[0].Reason, "order 42: event 3 (order.shipped) waited") || !strings.HasSuffix(dls[0].Reason, "for event 2") {
		t.Fatalf("dead letters: %+v, %v", dls, err)
	}
	// The gap fills late, then the dead letters are replayed: in sequence.
	var got []string
	for _, e := range []order.Order{event(42, 2), event(42, 4), event(42, 3)} {
		v, err := ls.Offer(ctx, e, e.EventID(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, kinds(v))
	}
	if fmt.Sprint(got) != "[applied 2 held applied 3L 4L]" {
		t.Errorf("late event and replay: %v", got)
	}
}
