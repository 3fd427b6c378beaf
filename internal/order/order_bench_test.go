package order

import "testing"

// The subscriber decodes and validates every delivery: the original example's order
// with the publisher's timestamp, as it arrives in a CloudEvent's data.
var benchOrder = []byte(`{"id":123456,"message":"Hello from publisher - message 123456","sent_at":"2026-11-27T09:30:00.123456789Z"}`)

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(benchOrder); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkString(b *testing.B) {
	o := New(123456)
	b.ReportAllocs()
	for b.Loop() {
		_ = o.String()
	}
}
