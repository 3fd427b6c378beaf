package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"dapr-pub-sub/internal/order"
)

// Life is one order's life in the ordered mode, as kept in the state store
// (Lives): the events applied, in sequence, and those that arrived before
// their predecessor, held. It is the order's state, its exactly-once
// record and its resequencer in one document, so that applying an event,
// advancing the sequence and recording it is one write.
type Life struct {
	ID int64 `json:"id"`
	// State is the type of the last event applied with effect ("" before
	// the first): what order.Allowed checks the next one against.
	State string `json:"state,omitempty"`
	// Applied is every event decided, in sequence: Applied[i] is event
	// i+1, applied with effect or, when Rejected, consumed without.
	Applied []Step `json:"applied,omitempty"`
	// Held are events whose predecessor has not been applied, by sequence.
	Held []Held `json:"held,omitempty"`
	// Attempt is the writer's own token for the last write, so that a
	// writer whose call failed can tell later whether its write landed.
	Attempt string `json:"attempt,omitempty"`
}

// Step is one decided event of a Life.
type Step struct {
	Type    string    `json:"type"`
	Digest  string    `json:"digest"` // of the type and message: a redelivery has the same, a conflicting event not
	EventID string    `json:"event_id"`
	At      time.Time `json:"at"`
	// Rejected says why the event was not allowed after the order's state
	// (it went to the dead letters); "" when it was applied.
	Rejected string `json:"rejected,omitempty"`
	// Late is true when it was applied after a later event had arrived
	// (it was held, or filled the gap that held others).
	Late bool `json:"late,omitempty"`
}

// Held is an event waiting for its predecessor.
type Held struct {
	Event   order.Order `json:"event"`
	EventID string      `json:"event_id"`
	Since   time.Time   `json:"since"`
}

// Verdict kinds: what offering an event to a Life did.
const (
	VerdictApplied   = "applied"   // it was next: decided, and so were the held events it let through
	VerdictHeld      = "held"      // its predecessor has not been applied: kept in the Life
	VerdictDuplicate = "duplicate" // decided or held already, with the same content
	VerdictConflict  = "conflict"  // decided or held already, with other content: a dead letter
	VerdictBeyond    = "beyond"    // further ahead than the hold limit: a dead letter
)

// Verdict is what Offer did with an event.
type Verdict struct {
	Kind string
	// Decided are the events this offer decided, in sequence: the event
	// offered and the held events it let through; each with its Step.
	Decided []Decided
	// Reason says why, for a conflict or an event beyond the hold limit.
	Reason string
}

// Decided is one event a Verdict decided.
type Decided struct {
	Event   order.Order
	EventID string
	Step    Step
}

// digest is what a redelivery of e shares and a conflicting event does not.
func digest(e order.Order) string {
	h := sha256.Sum256([]byte(e.Kind() + "\x00" + e.Message))
	return hex.EncodeToString(h[:8])
}

// Next is the sequence of the event the Life waits for.
func (l *Life) Next() int64 { return int64(len(l.Applied)) + 1 }

// Offer decides event e (with CloudEvent id eventID) against l at now and
// changes l accordingly: an event that is next is applied (or rejected,
// when order.Allowed refuses it after the order's state; either way its
// sequence is consumed) together with every held event it lets through;
// one further ahead is held, up to holdLimit ahead of the one it waits for;
// one decided or held already is a duplicate, or a conflict when its
// content differs. l changes only for VerdictApplied and VerdictHeld.
func (l *Life) Offer(e order.Order, eventID string, now time.Time, holdLimit int64) Verdict {
	seq, d := e.Sequence(), digest(e)
	if seq < l.Next() {
		return l.known(e, l.Applied[seq-1].Type, l.Applied[seq-1].Digest, "decided")
	}
	if i, found := l.held(seq); found {
		return l.known(e, l.Held[i].Event.Kind(), digest(l.Held[i].Event), "held")
	}
	if seq > l.Next() {
		if ahead := seq - l.Next(); ahead > holdLimit {
			return Verdict{Kind: VerdictBeyond, Reason: fmt.Sprintf("order %d: event %d (%s) is %d ahead of event %d, which the order waits for; the hold limit is %d",
				e.ID, seq, e.Kind(), ahead, l.Next(), holdLimit)}
		}
		i, _ := l.held(seq)
		l.Held = slices.Insert(l.Held, i, Held{Event: e, EventID: eventID, Since: now})
		return Verdict{Kind: VerdictHeld}
	}
	v := Verdict{Kind: VerdictApplied, Decided: []Decided{l.decide(e, eventID, d, now, len(l.Held) > 0)}}
	for len(l.Held) > 0 && l.Held[0].Event.Sequence() == l.Next() {
		h := l.Held[0]
		l.Held = l.Held[1:]
		v.Decided = append(v.Decided, l.decide(h.Event, h.EventID, digest(h.Event), now, true))
	}
	if len(l.Held) == 0 {
		l.Held = nil
	}
	return v
}

// known is the verdict on e, already decided or held (how) as typ with
// digest d.
func (l *Life) known(e order.Order, typ, d, how string) Verdict {
	if d == digest(e) {
		return Verdict{Kind: VerdictDuplicate}
	}
	diff := "message differs"
	if typ != e.Kind() {
		diff = fmt.Sprintf("type differs (%s, first %s)", e.Kind(), typ)
	}
	return Verdict{Kind: VerdictConflict, Reason: fmt.Sprintf("conflicting duplicate of %s: %s (the first one was %s and stays)", e.Name(), diff, how)}
}

// decide appends e to l.Applied: applied, or rejected when not allowed
// after l.State.
func (l *Life) decide(e order.Order, eventID, d string, now time.Time, late bool) Decided {
	st := Step{Type: e.Kind(), Digest: d, EventID: eventID, At: now, Late: late}
	if why := order.Allowed(l.State, e.Kind()); why != "" {
		st.Rejected = fmt.Sprintf("order %d: event %d: %s", e.ID, e.Sequence(), why)
	} else {
		l.State = e.Kind()
	}
	l.Applied = append(l.Applied, st)
	return Decided{Event: e, EventID: eventID, Step: st}
}

// held finds seq among l.Held: its index, or where it would go.
func (l *Life) held(seq int64) (int, bool) {
	return slices.BinarySearchFunc(l.Held, seq, func(h Held, seq int64) int {
		switch s := h.Event.Sequence(); {
		case s < seq:
			return -1
		case s > seq:
			return 1
		}
		return 0
	})
}

// Expire removes the held events that have waited gap or longer at now
// and returns them, each with the reason in the order's terms.
func (l *Life) Expire(now time.Time, gap time.Duration) []Expired {
	var out []Expired
	kept := l.Held[:0:0]
	for _, h := range l.Held {
		if now.Sub(h.Since) < gap {
			kept = append(kept, h)
			continue
		}
		out = append(out, Expired{Held: h, Reason: fmt.Sprintf("order %d: event %d (%s) waited %s for event %d",
			l.ID, h.Event.Sequence(), h.Event.Kind(), now.Sub(h.Since).Round(time.Second), l.Next())})
	}
	if len(out) > 0 {
		l.Held = kept
		if len(l.Held) == 0 {
			l.Held = nil
		}
	}
	return out
}

// Expired is a held event given up on, with why.
type Expired struct {
	Held
	Reason string
}
