package bench

import (
	"testing"
	"time"

	"dapr-pub-sub/internal/order"
)

func TestPayload(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 0, 0, 123456789, time.UTC)
	tests := map[string]struct {
		id       int64
		size     int
		wantSize int // 0: exactly size
	}{
		"the original size class: the minimum": {id: 19999, size: 60, wantSize: 66},
		"1 KiB":                                {id: 19999, size: 1024},
		"cut original message":                 {id: 7, size: 80},
		"id 0, 1 KiB":                          {id: 0, size: 1024},
		"4 KiB, the order limit":               {id: 3, size: 4096 + 61},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := Payload(tc.id, tc.size, at)
			want := tc.wantSize
			if want == 0 {
				want = tc.size
			}
			if len(b) != want {
				t.Errorf("len = %d, want %d: %s", len(b), want, b)
			}
			id, err := DecodePayload(b)
			if err != nil || id != tc.id {
				t.Fatalf("DecodePayload = %d, %v; want %d", id, err, tc.id)
			}
			// The system's subscriber must accept it as an order.
			o, err := order.Decode(b)
			if err != nil || o.ID != tc.id {
				t.Errorf("order.Decode = %+v, %v", o, err)
			}
		})
	}
}
