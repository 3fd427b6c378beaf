package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// TestThroughputModeKeepsTheGuarantees runs the high-throughput mode (bulk
// publish, bulk subscribe, the tuned component) with every 10th order
// failing its first delivery and a few invalid orders among them: inside a
// batch, each entry still gets its own answer, so each valid order's effect
// happens exactly once and each invalid one becomes a dead letter.
func TestThroughputModeKeepsTheGuarantees(t *testing.T) {
	const n = 2000
	s := startSystem(t, options{mode: proc.ModeThroughput, sub: func(c *subscriber.Config) { c.Faults.FailFirstEvery = 10 }})
	for i := range 3 {
		id := fmt.Sprintf("bad-%d", i)
		if code, body := s.publishHTTP("pubsub", "orders?metadata.cloudevent.id="+id, "application/json", `{"id":-1,"message":"bad"}`); code != 204 {
			t.Fatalf("publish %s = %d %s", id, code, body)
		}
	}
	s.publish(func(c *publisher.Config) { c.Count, c.Rate, c.Interval, c.Bulk = n, 0, 0, 100 })
	s.waitDrained(n, 2*time.Minute)
	waitFor(t, time.Minute, "3 dead letters kept", func() bool { return len(s.deadLetterIndex()) == 3 })
	waitFor(t, time.Minute, "the orders stream drained", func() bool { return s.pending("orders") == 0 })

	if lost := s.checkProcessedOnce(proc.SubscriberID, n); lost > 0 {
		t.Fatalf("%d orders lost", lost)
	}
	ids := s.deadLetterIndex()
	slices.Sort(ids)
	if strings.Join(ids, ",") != "bad-0,bad-1,bad-2" {
		t.Fatalf("dead letters = %v", ids)
	}
	// The orders came in batches through the bulk route, and the injected
	// failures were retried entry by entry.
	_, metrics := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(s.Sub.Port)+"/metrics")
	var count, sum float64
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, "orders_bulk_batch_entries_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "orders_bulk_batch_entries_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
	}
	if count == 0 || sum < n+3+n/10 || sum/count < 2 {
		t.Fatalf("bulk batches: %g entries in %g batches, want ≥ %d entries in batches of 2 or more", sum, count, n+3+n/10)
	}
	t.Logf("%g entries in %g batches (%.1f per batch)", sum, count, sum/count)
}
