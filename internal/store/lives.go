package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/order"
)

// Lives keeps the ordered mode's order lives (Life) in the state store:
// one document per order under "<app>/life/<id>", written only with the
// ETag it was read with (or insert-if-absent for an order's first), so
// that concurrent writers in any number of processes serialise per order
// and never per topic. An order with held events is also listed in one of
// heldShards index keys ("<app>/held/<n>"), which Sweep reads to give up
// on the gaps that do not fill: the state store is the only state, so a
// crash of any process loses nothing held.
//
// Safe for concurrent use. It remembers each order's last written Life
// when the store's ETags count writes (Dapr's Redis store does), so that
// the next event of an order it wrote costs one write and no read; a stale
// memory is refused by the store (the ETag differs) and read again.
type Lives struct {
	s *Store
	// HoldLimit is how far ahead of the event an order waits for an
	// event may be and still be held; further is a dead letter.
	HoldLimit int64
	// PubSub and Topic are recorded with the dead letters Lives keeps.
	PubSub, Topic string

	stripes [64]sync.Mutex // one writer per order in this process
	mu      sync.Mutex     // guards cache and unsure
	cache   map[int64]cachedLife
	// unsure is, per order, a write of applied events whose call failed
	// and could not be read back: it may have landed. The order's next
	// Offer here tells (the Life's Attempt) and does its effects.
	unsure map[int64]unsureWrite
}

type unsureWrite struct {
	attempt string
	verdict Verdict
}

type cachedLife struct {
	life Life
	etag string // the ETag the store gave the Life's write (its version + 1)
}

// heldShards is how many index keys list the orders with held events.
const heldShards = 16

// cacheSize bounds the Lives remembered; past it the memory starts over.
const cacheSize = 100_000

// Lives returns the order lives of s's app, holding events up to
// holdLimit ahead, recording dead letters as from pubsub/topic.
func (s *Store) Lives(holdLimit int64, pubsub, topic string) *Lives {
	return &Lives{s: s, HoldLimit: holdLimit, PubSub: pubsub, Topic: topic, cache: map[int64]cachedLife{}, unsure: map[int64]unsureWrite{}}
}

// LifeKey is the state key of order id's life, without the store's prefix.
func (s *Store) LifeKey(id int64) string { return s.appID + "/life/" + strconv.FormatInt(id, 10) }

func (s *Store) heldKey(shard int) string { return s.appID + "/held/" + strconv.Itoa(shard) }

// heldShard is the index key that lists order id when it holds events.
func (s *Store) heldShard(id int64) string { return s.heldKey(int(uint64(id) % heldShards)) }

// Offer decides event e, delivered as CloudEvent eventID, in its order's
// life (Life.Offer), and makes the decision durable before it returns: the
// Life written, and a dead letter kept (with its reason) for an event
// rejected, conflicting or beyond the hold limit. The Verdict says what
// to print. An error means the store could not be reached or raced too
// long: nothing may be assumed, and the delivery should be retried (a
// redelivery is recognised). The Life of a write whose call failed but
// landed is recognised by its Attempt.
//
// then, if not nil, is called with the verdict once it is durable, while
// no other Offer of this process for the same order runs: effects done
// there (printing the events applied) happen in each order's sequence.
func (ls *Lives) Offer(ctx context.Context, e order.Order, eventID string, then func(Verdict)) (v Verdict, err error) {
	stripe := &ls.stripes[uint64(e.ID)%uint64(len(ls.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	defer func() {
		if err == nil && then != nil {
			then(v)
		}
	}()
	life, etag, known := ls.remembered(e.ID)
	// An order's first event, from an order this process does not know, is
	// most often the order's first sight: it is tried as such, insert-if-
	// absent, without reading; a store that has the order refuses it, and
	// it is read then. Only a verdict that writes is tried so.
	guessed := !known && e.Sequence() == 1 && !ls.isUnsure(e.ID)
	if guessed {
		life = Life{ID: e.ID}
	} else if !known {
		var err error
		if life, etag, err = ls.read(ctx, e.ID); err != nil {
			return Verdict{}, err
		}
	}
	if u, ok := ls.takeUnsure(e.ID); ok && life.Attempt == u.attempt {
		// An earlier write here landed although its call failed: its
		// events were applied, their effects not done yet. A redelivery
		// of its event completes it; another event does its effects first.
		if u.verdict.Decided[0].EventID == eventID {
			return u.verdict, nil
		}
		if then != nil {
			then(u.verdict)
		}
	}
	for range 50 {
		next := life.clone()
		v := next.Offer(e, eventID, time.Now().UTC(), ls.HoldLimit)
		if guessed && (v.Kind != VerdictApplied || v.Decided[0].Step.Rejected != "") {
			// Not a plain first write: decide on what the store has.
			guessed = false
			var err error
			if life, etag, err = ls.read(ctx, e.ID); err != nil {
				return Verdict{}, err
			}
			continue
		}
		if err := ls.keepDeadLetters(ctx, v, e, eventID); err != nil {
			return Verdict{}, err
		}
		if v.Kind != VerdictApplied && v.Kind != VerdictHeld {
			return v, nil
		}
		if len(next.Held) > 0 && len(life.Held) == 0 {
			// Listed before it holds: an order listed without holds is
			// cleaned by Sweep, one holding unlisted would wait forever.
			if err := ls.list(ctx, e.ID); err != nil {
				return Verdict{}, err
			}
		}
		next.Attempt = rand.Text()
		err := ls.write(ctx, next, etag)
		if err == nil {
			ls.remember(next, etag)
			return v, nil
		}
		// Refused (another writer got there first, or the order was not
		// new: read it again), or the call broke, maybe after the store
		// applied it (the Attempt says).
		guessed = false
		ls.forget(e.ID)
		var rerr error
		if life, etag, rerr = ls.read(ctx, e.ID); rerr != nil {
			if v.Kind == VerdictApplied {
				ls.setUnsure(e.ID, unsureWrite{attempt: next.Attempt, verdict: v})
			}
			return Verdict{}, fmt.Errorf("%w (and reading it back: %w)", err, rerr)
		}
		if life.Attempt == next.Attempt {
			return v, nil
		}
	}
	return Verdict{}, fmt.Errorf("order %d: its life kept changing under 50 writes in a row", e.ID)
}

// keepDeadLetters keeps the dead letters of v: the event itself for a
// conflict or beyond the hold limit, each rejected event it decided. They
// are kept before the Life that consumes them is written, so none is lost
// to a crash in between (a dead letter is kept once per event id).
func (ls *Lives) keepDeadLetters(ctx context.Context, v Verdict, e order.Order, eventID string) error {
	if v.Kind == VerdictConflict || v.Kind == VerdictBeyond {
		return ls.deadLetter(ctx, e, eventID, v.Reason)
	}
	for _, d := range v.Decided {
		if d.Step.Rejected != "" {
			if err := ls.deadLetter(ctx, d.Event, d.EventID, d.Step.Rejected); err != nil {
				return err
			}
		}
	}
	return nil
}

// deadLetter keeps event e as a dead letter with reason.
func (ls *Lives) deadLetter(ctx context.Context, e order.Order, eventID, reason string) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := ls.s.AddDeadLetter(ctx, DeadLetter{EventID: eventID, PubSub: ls.PubSub, Topic: ls.Topic,
		ContentType: "application/json", Data: data, Reason: reason, ReceivedAt: time.Now().UTC()}); err != nil {
		return fmt.Errorf("keep the dead letter of %s: %w", e.Name(), err)
	}
	return nil
}

// read reads order id's Life and its ETag; an order never seen is an
// empty Life and "".
func (ls *Lives) read(ctx context.Context, id int64) (Life, string, error) {
	key := ls.s.LifeKey(id)
	it, err := ls.s.client.GetState(ctx, ls.s.name, key, nil)
	if err != nil {
		return Life{}, "", fmt.Errorf("read %s from state store %s: %w", key, ls.s.name, err)
	}
	if it == nil || len(it.Value) == 0 {
		return Life{ID: id}, "", nil
	}
	var l Life
	if err := json.Unmarshal(it.Value, &l); err != nil {
		return Life{}, "", fmt.Errorf("decode %s: %w", key, err)
	}
	return l, it.Etag, nil
}

// write saves l if the stored Life still has etag ("": if there is none).
// A Life lives for good while the order's life goes on (it is the order's
// state, and its events may come days apart); once it has ended
// (order.Final) and holds nothing, it lives as long as a record does
// (WithRetention): what can still come is a redelivery.
func (ls *Lives) write(ctx context.Context, l Life, etag string) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	var meta map[string]string
	if order.Final(l.State) && len(l.Held) == 0 {
		meta = ttl(ls.s.recordTTL)
	}
	err = ls.s.client.SaveStateWithETag(ctx, ls.s.name, ls.s.LifeKey(l.ID), b, etag, meta, dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	if err != nil {
		return fmt.Errorf("save %s in state store %s: %w", ls.s.LifeKey(l.ID), ls.s.name, err)
	}
	return nil
}

// list adds order id to its held index shard, as "id/unix seconds": when
// it was listed, so that Sweep leaves a freshly listed order alone.
func (ls *Lives) list(ctx context.Context, id int64) error {
	sid := strconv.FormatInt(id, 10)
	entry := sid + "/" + strconv.FormatInt(time.Now().Unix(), 10)
	return ls.s.updateIndex(ctx, ls.s.heldShard(id), func(ids []string) []string {
		return append(slices.DeleteFunc(slices.Clone(ids), func(e string) bool { return listedID(e) == sid }), entry)
	})
}

// listedID and listedAt read an index entry "id/unix seconds".
func listedID(entry string) string {
	id, _, _ := strings.Cut(entry, "/")
	return id
}

func listedAt(entry string) time.Time {
	_, at, _ := strings.Cut(entry, "/")
	sec, _ := strconv.ParseInt(at, 10, 64)
	return time.Unix(sec, 0)
}

// remembered is the Life this process last wrote for order id, with the
// ETag the store gave that write, if it knows both.
func (ls *Lives) remembered(id int64) (Life, string, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	c, ok := ls.cache[id]
	return c.life, c.etag, ok
}

// remember keeps l, just written over etag, when the store's ETags count
// writes: the next ETag is then etag + 1 ("" counts as 0).
func (ls *Lives) remember(l Life, etag string) {
	n := int64(0)
	if etag != "" {
		var err error
		if n, err = strconv.ParseInt(etag, 10, 64); err != nil {
			return // opaque ETags: read each time
		}
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.cache) >= cacheSize {
		clear(ls.cache)
	}
	ls.cache[l.ID] = cachedLife{life: l, etag: strconv.FormatInt(n+1, 10)}
}

func (ls *Lives) setUnsure(id int64, u unsureWrite) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.unsure[id] = u
}

// isUnsure reports whether order id has an unsure write.
func (ls *Lives) isUnsure(id int64) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	_, ok := ls.unsure[id]
	return ok
}

// takeUnsure returns and forgets order id's unsure write, if any.
func (ls *Lives) takeUnsure(id int64) (unsureWrite, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	u, ok := ls.unsure[id]
	delete(ls.unsure, id)
	return u, ok
}

func (ls *Lives) forget(id int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.cache, id)
}

// clone is a deep copy of l, for a change that may be thrown away.
func (l Life) clone() Life {
	l.Applied = slices.Clone(l.Applied)
	l.Held = slices.Clone(l.Held)
	return l
}

// Swept is what one Sweep found and did.
type Swept struct {
	Held    int           // events held over all the orders listed, after the sweep
	Oldest  time.Duration // how long the oldest of them has waited; 0 for none
	Expired []Expired     // held events given up on: now dead letters
}

// quietAfter is how long an order stays listed at least: longer than any
// delivery takes (the handler's timeout), so that a writer that listed the
// order before writing its first hold is never unlisted in between.
const quietAfter = time.Minute

// Sweep gives up on every held event that has waited gap or longer: it
// keeps each as a dead letter with the reason ("order 42: event 3
// (order.shipped) waited 5m0s for event 2"), then removes it from its
// Life, which then waits for its gap as before (a replayed dead letter is
// held or applied again). It unlists the orders that hold nothing. Any
// number of processes may sweep at once. An error leaves the rest for the
// next sweep.
func (ls *Lives) Sweep(ctx context.Context, gap time.Duration) (Swept, error) {
	var out Swept
	shards := make([]string, heldShards)
	for i := range shards {
		shards[i] = ls.s.heldKey(i)
	}
	items, err := ls.s.client.GetBulkState(ctx, ls.s.name, shards, nil, 4)
	if err != nil {
		return out, fmt.Errorf("read the held index: %w", err)
	}
	for _, it := range items {
		if it == nil || len(it.Value) == 0 {
			continue
		}
		var ids []string
		if err := json.Unmarshal(it.Value, &ids); err != nil {
			return out, fmt.Errorf("decode %s: %w", it.Key, err)
		}
		if err := ls.sweepShard(ctx, it.Key, ids, gap, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// sweepShard is Sweep for the orders ids listed under shard.
func (ls *Lives) sweepShard(ctx context.Context, shard string, ids []string, gap time.Duration, out *Swept) error {
	var quiet []string
	for _, entry := range ids {
		id, err := strconv.ParseInt(listedID(entry), 10, 64)
		if err != nil {
			quiet = append(quiet, entry) // not ours
			continue
		}
		held, oldest, expired, err := ls.expire(ctx, id, gap)
		if err != nil {
			return err
		}
		out.Expired = append(out.Expired, expired...)
		out.Held += held
		out.Oldest = max(out.Oldest, oldest)
		if held == 0 && time.Since(listedAt(entry)) >= quietAfter {
			quiet = append(quiet, entry)
		}
	}
	if len(quiet) == 0 {
		return nil
	}
	return ls.s.updateIndex(ctx, shard, func(ids []string) []string {
		kept := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(quiet, id) })
		if len(kept) == len(ids) {
			return nil
		}
		return kept
	})
}

// expire gives up on order id's held events older than gap. It returns
// how many it still holds and the oldest one's wait.
func (ls *Lives) expire(ctx context.Context, id int64, gap time.Duration) (held int, oldest time.Duration, expired []Expired, err error) {
	stripe := &ls.stripes[uint64(id)%uint64(len(ls.stripes))]
	stripe.Lock()
	defer stripe.Unlock()
	life, etag, err := ls.read(ctx, id)
	if err != nil {
		return 0, 0, nil, err
	}
	now := time.Now().UTC()
	next := life.clone()
	expired = next.Expire(now, gap)
	for _, x := range expired {
		if err := ls.deadLetter(ctx, x.Event, x.EventID, x.Reason); err != nil {
			return 0, 0, nil, err
		}
	}
	if len(expired) > 0 {
		next.Attempt = rand.Text()
		ls.forget(id)
		if err := ls.write(ctx, next, etag); err != nil {
			// Raced with a delivery: the next sweep looks again (the dead
			// letters are kept once each).
			return len(life.Held), 0, nil, nil
		}
	}
	for _, h := range next.Held {
		oldest = max(oldest, now.Sub(h.Since))
	}
	return len(next.Held), oldest, expired, nil
}
