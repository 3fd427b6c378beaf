package order

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Order
		wantErr string
	}{
		"object":            {in: `{"id": 3, "message": "hi"}`, want: Order{ID: 3, Message: "hi"}},
		"object in string":  {in: `"{\"id\": 3, \"message\": \"hi\"}"`, want: Order{ID: 3, Message: "hi"}},
		"unknown field":     {in: `{"id": 1, "message": "m", "extra": true}`, want: Order{ID: 1, Message: "m"}},
		"zero id":           {in: `{"id": 0, "message": "m"}`, want: Order{ID: 0, Message: "m"}},
		"max id":            {in: `{"id": 9223372036854775807, "message": "m"}`, want: Order{ID: 9223372036854775807, Message: "m"}},
		"empty":             {in: ``, wantErr: "empty data"},
		"malformed":         {in: `{"id": 1,`, wantErr: "data is not valid JSON"},
		"array":             {in: `[1,2]`, wantErr: `data is a JSON array, not an object; an order is a JSON object {"id": <integer>, "message": <text>}`},
		"number":            {in: `42`, wantErr: "data is a JSON number, not an object"},
		"message a number":  {in: `{"id": 1, "message": 5}`, wantErr: `field "message" must be text, got a JSON number`},
		"string not object": {in: `"hello"`, wantErr: "does not hold an object"},
		"missing id":        {in: `{"message": "m"}`, wantErr: `"id" is missing`},
		"null id":           {in: `{"id": null, "message": "m"}`, wantErr: `"id" is missing`},
		"string id":         {in: `{"id": "5", "message": "m"}`, wantErr: `"id" must be an integer`},
		"float id":          {in: `{"id": 1.5, "message": "m"}`, wantErr: `"id" must be an integer`},
		"huge id":           {in: `{"id": 9223372036854775808, "message": "m"}`, wantErr: `"id" must be an integer`},
		"negative id":       {in: `{"id": -1, "message": "m"}`, wantErr: "id must be ≥ 0"},
		"missing message":   {in: `{"id": 1}`, wantErr: `"message" is missing`},
		"empty message":     {in: `{"id": 1, "message": ""}`, wantErr: "must not be empty"},
		"sent_at":           {in: `{"id": 1, "message": "m", "sent_at": "2026-11-27T09:00:00.5Z"}`, want: Order{ID: 1, Message: "m", SentAt: time.Date(2026, 11, 27, 9, 0, 0, 5e8, time.UTC)}},
		"sent_at as UTC":    {in: `{"id": 1, "message": "m", "sent_at": "2026-11-27T10:00:00+01:00"}`, want: Order{ID: 1, Message: "m", SentAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}},
		"sent_at in string": {in: `"{\"id\": 1, \"message\": \"m\", \"sent_at\": \"2026-11-27T09:00:00Z\"}"`, want: Order{ID: 1, Message: "m", SentAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)}},
		"future sent_at":    {in: `{"id": 1, "message": "m", "sent_at": "2999-01-01T00:00:00Z"}`, want: Order{ID: 1, Message: "m", SentAt: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)}},
		"null sent_at":      {in: `{"id": 1, "message": "m", "sent_at": null}`, want: Order{ID: 1, Message: "m"}},
		"number sent_at":    {in: `{"id": 1, "message": "m", "sent_at": 1764234000}`, want: Order{ID: 1, Message: "m"}},
		"garbled sent_at":   {in: `{"id": 1, "message": "m", "sent_at": "yesterday"}`, want: Order{ID: 1, Message: "m"}},
		"long message":      {in: `{"id": 1, "message": "` + strings.Repeat("x", MaxMessageBytes+1) + `"}`, wantErr: "the limit is"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if err != nil && (strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "struct")) {
				t.Errorf("the reason speaks of Go types: %v", err)
			}
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode(%q) error = %v, want ErrInvalid containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("Decode(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestStringIsSeedFormatAndRoundTrips(t *testing.T) {
	o := New(7)
	if got, want := o.String(), `{"id": 7, "message": "Hello from publisher - message 7"}`; got != want {
		t.Fatalf("String() = %s, want %s", got, want)
	}
	odd := Order{ID: 1, Message: "quote \" and newline \n"}
	back, err := Decode([]byte(odd.String()))
	if err != nil || back != odd {
		t.Fatalf("Decode(String()) = %+v, %v; want %+v", back, err, odd)
	}
	b, err := json.Marshal(odd)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := Decode(b); err != nil || back != odd {
		t.Fatalf("Decode(Marshal()) = %+v, %v", back, err)
	}
}

func TestValidateRejectsBadUTF8(t *testing.T) {
	if err := (Order{ID: 1, Message: "\xff"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate() = %v, want ErrInvalid", err)
	}
}

func TestSentAtIsOptionalOnTheWire(t *testing.T) {
	tests := map[string]struct {
		o    Order
		want string
	}{
		"unset":   {o: New(1), want: `{"id":1,"message":"Hello from publisher - message 1"}`},
		"set":     {o: Order{ID: 2, Message: "m", SentAt: time.Date(2026, 11, 27, 9, 0, 0, 123456789, time.UTC)}, want: `{"id":2,"message":"m","sent_at":"2026-11-27T09:00:00.123456789Z"}`},
		"in json": {o: Order{ID: 3, Message: "m", SentAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, want: `{"id":3,"message":"m","sent_at":"2026-01-02T03:04:05Z"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(tc.o)
			if err != nil || string(b) != tc.want {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.want)
			}
			back, err := Decode(b)
			if err != nil || back != tc.o {
				t.Fatalf("Decode(Marshal()) = %+v, %v; want %+v", back, err, tc.o)
			}
			if s := tc.o.String(); strings.Contains(s, "sent_at") {
				t.Fatalf("String() = %s, want the original example's format without sent_at", s)
			}
		})
	}
}

func TestDecodeEvent(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Order
		wantErr string
	}{
		"no seq: the first event":  {in: `{"id": 1, "message": "m"}`, want: Order{ID: 1, Message: "m"}},
		"second event":             {in: `{"id": 1, "message": "m", "seq": 2, "type": "order.paid"}`, want: Order{ID: 1, Message: "m", Seq: 2, Type: TypePaid}},
		"seq in a string":          {in: `"{\"id\": 1, \"message\": \"m\", \"seq\": 3, \"type\": \"order.shipped\"}"`, want: Order{ID: 1, Message: "m", Seq: 3, Type: TypeShipped}},
		"seq 0":                    {in: `{"id": 1, "message": "m", "seq": 0}`, wantErr: "seq must be ≥ 1, got 0"},
		"negative seq":             {in: `{"id": 1, "message": "m", "seq": -2, "type": "order.paid"}`, wantErr: "seq must be ≥ 1, got -2"},
		"seq a string":             {in: `{"id": 1, "message": "m", "seq": "2", "type": "order.paid"}`, wantErr: `field "seq" must be an integer ≥ 1`},
		"unknown type":             {in: `{"id": 1, "message": "m", "seq": 2, "type": "order.lost"}`, wantErr: `type "order.lost" is not an order event type`},
		"later event without type": {in: `{"id": 7, "message": "m", "seq": 2}`, wantErr: "event 2 of order 7 has no type"},
		"type a number":            {in: `{"id": 1, "message": "m", "type": 5}`, wantErr: `field "type" must be text`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode(%q) error = %v, want ErrInvalid containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Decode(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestEventForms(t *testing.T) {
	first := New(4)
	if first.EventID() != "order-4" || first.String() != `{"id": 4, "message": "Hello from publisher - message 4"}` {
		t.Errorf("first event: id %s, line %s", first.EventID(), first)
	}
	if e := first.Event(1, TypeCreated); e != first {
		t.Errorf("Event(1, created) = %+v, want the original example's order %+v", e, first)
	}
	paid := first.Event(2, TypePaid)
	if paid.EventID() != "order-4-2" {
		t.Errorf("EventID of event 2 = %s", paid.EventID())
	}
	if want := `{"id": 4, "message": "Hello from publisher - message 4", "seq": 2, "type": "order.paid"}`; paid.String() != want {
		t.Errorf("String() = %s, want %s", paid, want)
	}
	b, _ := json.Marshal(paid)
	if back, err := Decode(b); err != nil || back != paid {
		t.Errorf("round trip of %s = %+v, %v", b, back, err)
	}
	if c := paid.Conflict(first.Event(2, TypeCancelled)); !strings.Contains(c, "type differs") {
		t.Errorf("Conflict of two types = %q", c)
	}
}

func TestAllowed(t *testing.T) {
	for _, tc := range []struct{ state, typ, want string }{
		{"", TypeCreated, ""},
		{"", TypePaid, "order.paid before the order was created"},
		{TypeCreated, TypePaid, ""},
		{TypeCreated, TypeCancelled, ""},
		{TypePaid, TypeShipped, ""},
		{TypeShipped, TypeDelivered, ""},
		{TypeShipped, TypeCancelled, "order.cancelled is not allowed after order.shipped"},
		{TypeCancelled, TypeShipped, "order.shipped is not allowed after order.cancelled"},
		{TypeDelivered, TypeCreated, "order.created is not allowed after order.delivered"},
	} {
		if got := Allowed(tc.state, tc.typ); got != tc.want {
			t.Errorf("Allowed(%q, %q) = %q, want %q", tc.state, tc.typ, got, tc.want)
		}
	}
	if Final("") || Final(TypePaid) || !Final(TypeDelivered) || !Final(TypeCancelled) {
		t.Error("Final: only delivered and cancelled end a life")
	}
	for i := 1; i < len(Life); i++ {
		if r := Allowed(Life[i-1], Life[i]); r != "" {
			t.Errorf("the usual life is refused at %d: %s", i+1, r)
		}
	}
}
