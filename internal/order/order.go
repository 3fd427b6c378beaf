// Package order is the event contract between the publisher and the
// subscriber: the Order type, its validation and its JSON forms.
//
// "The original example", here and across the project, is the system this
// project builds in Go: Dapr's Python pub/sub example of a publisher, Redis
// Streams (component pubsub, topic orders) and a subscriber web app. Its
// names, ports, order shape and "Received message: {...}" line are kept, so
// that its commands and docs map one to one.
//
// On the wire an order is a JSON object, {"id": 0, "message": "..."}, carried
// as the data of a CloudEvent with datacontenttype application/json. Unknown
// fields are ignored, so a newer publisher can add fields without breaking an
// older subscriber. id and message are required; sent_at, the time the
// publisher published the order, is optional.
//
// An order has a life of events, each one JSON object with the order's id:
// "seq", its place in the order's life (1, 2, 3 …), and "type", what
// happened (order.created, order.paid, order.shipped, order.delivered,
// order.cancelled). Both are optional: an event without them is the
// original example's order, sequence 1, order.created; an event after the
// first must name its type. The CloudEvent id of an event is stable per
// (order, sequence): "order-N" for the first, "order-N-S" after.
package order

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// CloudEventIDKey is the publish metadata key that sets the CloudEvent id
// daprd gives an event (instead of a random one).
const CloudEventIDKey = "cloudevent.id"

// CloudEventID is the CloudEvent id an order's first event is published
// under. It is a stable key: a retried publish of the same order carries
// the same id, so a subscriber can recognise the duplicate.
func CloudEventID(id int64) string {
	return "order-" + strconv.FormatInt(id, 10)
}

// EventID is the CloudEvent id o is published under: CloudEventID for an
// order's first event, "order-N-S" for its event S > 1. Stable per (order,
// sequence), as CloudEventID is per order.
func (o Order) EventID() string {
	if s := o.Sequence(); s > 1 {
		return CloudEventID(o.ID) + "-" + strconv.FormatInt(s, 10)
	}
	return CloudEventID(o.ID)
}

// Event types: what happened to an order. An order's life starts with
// TypeCreated; Next lists what may follow each.
const (
	TypeCreated   = "order.created"
	TypePaid      = "order.paid"
	TypeShipped   = "order.shipped"
	TypeDelivered = "order.delivered"
	TypeCancelled = "order.cancelled"
)

// Life is the usual life of an order, in sequence: its event i+1 is Life[i].
var Life = []string{TypeCreated, TypePaid, TypeShipped, TypeDelivered}

// next lists the event types allowed after an order's state (the type of
// its last applied event; "" before any): delivered and cancelled end it.
var next = map[string][]string{
	"":          {TypeCreated},
	TypeCreated: {TypePaid, TypeCancelled},
	TypePaid:    {TypeShipped, TypeCancelled},
	TypeShipped: {TypeDelivered},
}

// Allowed says why event type typ may not follow state (the type of the
// order's last applied event, "" for none), "" when it may.
func Allowed(state, typ string) string {
	for _, t := range next[state] {
		if t == typ {
			return ""
		}
	}
	if state == "" {
		return fmt.Sprintf("%s before the order was created", typ)
	}
	return fmt.Sprintf("%s is not allowed after %s", typ, state)
}

// Final reports whether state (the type of an order's last applied event)
// ends its life: nothing may follow it.
func Final(state string) bool { return state != "" && len(next[state]) == 0 }

// knownType reports whether typ is one of the event types.
func knownType(typ string) bool {
	switch typ {
	case TypeCreated, TypePaid, TypeShipped, TypeDelivered, TypeCancelled:
		return true
	}
	return false
}

// MaxMessageBytes bounds Order.Message. Larger orders are invalid: they are
// rejected by the publisher and dropped by the subscriber, never retried.
const MaxMessageBytes = 4096

// ErrInvalid marks an order that can never be processed: bad JSON, a wrong
// shape, or a value out of range. Retrying it cannot help; errors.Is(err,
// ErrInvalid) tells a permanent failure from a transient one.
var ErrInvalid = errors.New("invalid order")

// Order is one order event.
type Order struct {
	// ID identifies the order. It is ≥ 0 and unique per order.
	ID int64 `json:"id"`
	// Message is free text, 1 to MaxMessageBytes bytes of UTF-8.
	Message string `json:"message"`
	// SentAt is when the publisher published the order (UTC), for measuring
	// end-to-end latency; the zero time when unknown (an older publisher, a
	// hand-written order), and then left out of the JSON. It is informative
	// only: no value of it makes an order invalid, not even one in the
	// future (the publisher's clock may be ahead).
	SentAt time.Time `json:"sent_at,omitzero"`
	// Seq is the event's place in the order's life, ≥ 1; 0 when the event
	// did not say, which reads as 1 (Sequence). Left out of the JSON then.
	Seq int64 `json:"seq,omitzero"`
	// Type is what happened (a Type* constant); "" when the event did not
	// say, which reads as TypeCreated (Kind). Left out of the JSON then.
	Type string `json:"type,omitempty"`
}

// Sequence is o's place in its order's life: Seq, or 1 when unset.
func (o Order) Sequence() int64 { return max(o.Seq, 1) }

// Name names event o in log lines and reasons: "order 5" for an order's
// first event, "order 5 event 2 (order.paid)" for a later one.
func (o Order) Name() string {
	if o.Sequence() == 1 {
		return "order " + strconv.FormatInt(o.ID, 10)
	}
	return fmt.Sprintf("order %d event %d (%s)", o.ID, o.Sequence(), o.Kind())
}

// Kind is o's event type: Type, or TypeCreated when unset.
func (o Order) Kind() string {
	if o.Type == "" {
		return TypeCreated
	}
	return o.Type
}

// Event is o as its order's event seq of type typ: e.g. Event(2,
// TypePaid) is the second event of the order's life.
func (o Order) Event(seq int64, typ string) Order {
	o.Seq, o.Type = seq, typ
	if seq == 1 && typ == TypeCreated {
		o.Seq, o.Type = 0, "" // the original example's form on the wire
	}
	return o
}

// New returns the original example's order number id.
func New(id int64) Order {
	return Order{ID: id, Message: fmt.Sprintf("Hello from publisher - message %d", id)}
}

// Validate reports why o can't be processed, wrapping ErrInvalid, or nil.
func (o Order) Validate() error {
	switch {
	case o.ID < 0:
		return invalid("id must be ≥ 0, got %d", o.ID)
	case o.Message == "":
		return invalid("message must not be empty")
	case len(o.Message) > MaxMessageBytes:
		return invalid("message is %d bytes, the limit is %d", len(o.Message), MaxMessageBytes)
	case !utf8.ValidString(o.Message):
		return invalid("message is not valid UTF-8")
	case o.Seq < 0:
		return invalid("seq must be ≥ 1, got %d", o.Seq)
	case o.Type != "" && !knownType(o.Type):
		return invalid("type %q is not an order event type (order.created, order.paid, order.shipped, order.delivered, order.cancelled)", o.Type)
	case o.Seq > 1 && o.Type == "":
		return invalid("event %d of order %d has no type; only an order's first event may leave it out", o.Seq, o.ID)
	}
	return nil
}

// Conflict says how other, an order with the same id, differs from o in
// what is processed (the message); "" when it does not. SentAt is not
// compared: a republished order keeps its content but not its send time.
func (o Order) Conflict(other Order) string {
	switch {
	case o.ID != other.ID:
		return fmt.Sprintf("order %d is not order %d", other.ID, o.ID)
	case o.Sequence() != other.Sequence():
		return fmt.Sprintf("event %d is not event %d", other.Sequence(), o.Sequence())
	case o.Kind() != other.Kind():
		return fmt.Sprintf("type differs (%s, first %s)", other.Kind(), o.Kind())
	case o.Message != other.Message:
		return "message differs"
	}
	return ""
}

// String formats o as the original example prints it: {"id": 0, "message": "..."},
// with "seq" and "type" after the message for an event other than the
// original example's (sequence 1, order.created). SentAt is not part of it.
func (o Order) String() string {
	return string(o.AppendSeed(make([]byte, 0, 40+len(o.Message))))
}

// AppendSeed appends String's form of o to dst, for a caller that writes
// many orders without a string each.
func (o Order) AppendSeed(dst []byte) []byte {
	msg, _ := json.Marshal(o.Message) // a string always marshals
	dst = append(dst, `{"id": `...)
	dst = strconv.AppendInt(dst, o.ID, 10)
	dst = append(dst, `, "message": `...)
	dst = append(dst, msg...)
	if o.Sequence() != 1 || o.Kind() != TypeCreated {
		dst = append(dst, `, "seq": `...)
		dst = strconv.AppendInt(dst, o.Sequence(), 10)
		dst = append(dst, `, "type": "`...)
		dst = append(dst, o.Kind()...) // a known type: nothing to escape
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// Decode parses and validates an order from a CloudEvent's data.
//
// raw is either the JSON object itself (what a publish with content type
// application/json delivers) or a JSON string that holds the object (what a
// publish without a content type delivers). Every failure wraps ErrInvalid and
// says what was wrong. A sent_at that is absent, null or not an RFC 3339
// timestamp string leaves SentAt zero rather than failing: it is not part of
// what must be processed.
func Decode(raw []byte) (Order, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Order{}, invalid("empty data")
	}
	if raw[0] == '"' {
		var inner string
		if err := json.Unmarshal(raw, &inner); err != nil {
			return Order{}, invalid("data is a malformed JSON string: %v", err)
		}
		raw = bytes.TrimSpace([]byte(inner))
		if len(raw) == 0 || raw[0] != '{' {
			return Order{}, invalid("data is a JSON string that does not hold an object")
		}
	}
	// The common case in one pass and few allocations: every field
	// present and of its type. Anything else takes the path below, which
	// says precisely what is wrong.
	var fast struct {
		ID      *int64     `json:"id"`
		Message *string    `json:"message"`
		SentAt  *time.Time `json:"sent_at"`
		Seq     *int64     `json:"seq"`
		Type    *string    `json:"type"`
	}
	if json.Unmarshal(raw, &fast) == nil && fast.ID != nil && fast.Message != nil {
		o := Order{ID: *fast.ID, Message: *fast.Message}
		if fast.SentAt != nil {
			o.SentAt = fast.SentAt.UTC()
		}
		return o.withEvent(fast.Seq, fast.Type)
	}
	var wire struct {
		ID      json.RawMessage `json:"id"`
		Message *string         `json:"message"`
		SentAt  json.RawMessage `json:"sent_at"`
		Seq     json.RawMessage `json:"seq"`
		Type    *string         `json:"type"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return Order{}, invalid("%s", describe(raw, err))
	}
	if wire.ID == nil || string(wire.ID) == "null" {
		return Order{}, invalid(`field "id" is missing`)
	}
	id, err := strconv.ParseInt(string(wire.ID), 10, 64)
	if err != nil {
		return Order{}, invalid(`field "id" must be an integer in int64 range, got %s`, wire.ID)
	}
	if wire.Message == nil {
		return Order{}, invalid(`field "message" is missing`)
	}
	o := Order{ID: id, Message: *wire.Message}
	var sent time.Time
	if wire.SentAt != nil && json.Unmarshal(wire.SentAt, &sent) == nil {
		o.SentAt = sent.UTC()
	}
	var seq *int64
	if wire.Seq != nil && string(wire.Seq) != "null" {
		n, err := strconv.ParseInt(string(wire.Seq), 10, 64)
		if err != nil {
			return Order{}, invalid(`field "seq" must be an integer ≥ 1, got %s`, wire.Seq)
		}
		seq = &n
	}
	return o.withEvent(seq, wire.Type)
}

// withEvent sets o's sequence and type as an event gave them (nil: not
// given) and validates o. An explicit 0 is not "unset": it is invalid.
func (o Order) withEvent(seq *int64, typ *string) (Order, error) {
	if seq != nil {
		if *seq < 1 {
			return Order{}, invalid("seq must be ≥ 1, got %d", *seq)
		}
		o.Seq = *seq
	}
	if typ != nil {
		o.Type = *typ
	}
	return o, o.Validate()
}

// describe says why raw is not an order, in the order's terms rather than
// Go's: what JSON value it is, where it is malformed, which field has the
// wrong type.
func describe(raw []byte, err error) string {
	const shape = `an order is a JSON object {"id": <integer>, "message": <text>}`
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("data is not valid JSON (at byte %d); %s", syntax.Offset, shape)
	case raw[0] != '{':
		return fmt.Sprintf("data is a JSON %s, not an object; %s", jsonKind(raw[0]), shape)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Sprintf("field %q must be %s, got a JSON %s", typ.Field, map[string]string{"message": "text", "id": "an integer", "seq": "an integer ≥ 1", "type": "text"}[typ.Field], typ.Value)
	}
	return "data is not an order object; " + shape
}

// jsonKind names the JSON value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
