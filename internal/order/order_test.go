package order

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Order
		wantErr string
	}{
		"object":            {in: `{"id": 3, "message": "hi"}`, want: Order{3, "hi"}},
		"object in string":  {in: `"{\"id\": 3, \"message\": \"hi\"}"`, want: Order{3, "hi"}},
		"unknown field":     {in: `{"id": 1, "message": "m", "extra": true}`, want: Order{1, "m"}},
		"zero id":           {in: `{"id": 0, "message": "m"}`, want: Order{0, "m"}},
		"max id":            {in: `{"id": 9223372036854775807, "message": "m"}`, want: Order{9223372036854775807, "m"}},
		"empty":             {in: ``, wantErr: "empty data"},
		"malformed":         {in: `{"id": 1,`, wantErr: "not an order object"},
		"array":             {in: `[1,2]`, wantErr: "not an order object"},
		"string not object": {in: `"hello"`, wantErr: "does not hold an object"},
		"missing id":        {in: `{"message": "m"}`, wantErr: `"id" is missing`},
		"null id":           {in: `{"id": null, "message": "m"}`, wantErr: `"id" is missing`},
		"string id":         {in: `{"id": "5", "message": "m"}`, wantErr: `"id" must be an integer`},
		"float id":          {in: `{"id": 1.5, "message": "m"}`, wantErr: `"id" must be an integer`},
		"huge id":           {in: `{"id": 9223372036854775808, "message": "m"}`, wantErr: `"id" must be an integer`},
		"negative id":       {in: `{"id": -1, "message": "m"}`, wantErr: "id must be ≥ 0"},
		"missing message":   {in: `{"id": 1}`, wantErr: `"message" is missing`},
		"empty message":     {in: `{"id": 1, "message": ""}`, wantErr: "must not be empty"},
		"long message":      {in: `{"id": 1, "message": "` + strings.Repeat("x", MaxMessageBytes+1) + `"}`, wantErr: "the limit is"},
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
