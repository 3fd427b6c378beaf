package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber"
)

// TestBadInputIsRefusedOrDeadLettered sends every kind of bad input the
// system can meet, on each delivery channel. Each one is either refused at
// publish with a clear error and nothing stored, or kept as a dead letter
// with its reason; none is lost silently, crashes the subscriber or loops.
func TestBadInputIsRefusedOrDeadLettered(t *testing.T) {
	for _, channel := range system.Channels(tools.Daprd.Version) {
		t.Run(string(channel), func(t *testing.T) { badInput(t, channel) })
	}
}

func badInput(t *testing.T, channel system.Channel) {
	s := startSystem(t, options{channel: channel})
	publish := func(component, contentType, body string) (int, string) {
		return s.publishHTTP(component, "orders", contentType, body)
	}

	// Refused at the door: nothing reaches Redis.
	if code, body := publish("nope", "application/json", `{"id":1,"message":"m"}`); code != http.StatusNotFound || !strings.Contains(body, "pubsub nope is not found") {
		t.Errorf("publish to an unknown component = %d %s, want 404 naming it", code, body)
	}
	huge := `{"id":2,"message":"` + strings.Repeat("x", 5<<20) + `"}`
	if code, body := publish("pubsub", "application/json", huge); code < 400 || !strings.Contains(body, "ERR_PUBSUB_PUBLISH_MESSAGE") {
		t.Errorf("publish of 5 MiB = %d %.200s, want an error", code, body)
	}
	if n, _ := s.redis.XLen(t.Context(), "orders").Result(); n != 0 {
		t.Fatalf("refused publishes left %d entries in the stream", n)
	}

	// Accepted by Dapr, then dead-lettered by the subscriber with a reason.
	deadLettered := map[string]struct{ contentType, body, reason string }{
		"malformed JSON":       {"application/json", `{"id": 1,`, "not valid JSON"},
		"an array":             {"application/json", `[{"id":11,"message":"m"}]`, "data is a JSON array, not an object"},
		"wrong shape":          {"application/json", `{"sku":"x","qty":2}`, `"id" is missing`},
		"empty body":           {"application/json", ``, "does not hold an object"},
		"text, not an order":   {"text/plain", `hello`, "does not hold an object"},
		"negative id":          {"application/json", `{"id":-7,"message":"m"}`, "id must be ≥ 0"},
		"id beyond int64":      {"application/json", `{"id":99999999999999999999,"message":"m"}`, "must be an integer in int64 range"},
		"message over 4 KiB":   {"application/json", `{"id":8,"message":"` + strings.Repeat("y", 5000) + `"}`, "the limit is 4096"},
		"id of the wrong type": {"application/json", `{"id":"9","message":"m"}`, `"id" must be an integer`},
	}
	for name, in := range deadLettered {
		if code, body := publish("pubsub", in.contentType, in.body); code != http.StatusNoContent {
			t.Fatalf("%s: publish = %d %s", name, code, body)
		}
	}
	// Accepted and processed: an order sent as text/plain is still an order.
	if code, _ := publish("pubsub", "text/plain", `{"id":10,"message":"as text"}`); code != http.StatusNoContent {
		t.Fatal("text/plain order refused")
	}
	// Written straight into the stream, bypassing Dapr.
	for _, data := range []string{
		"not a cloudevent",
		`{"id":"direct-11","datacontenttype":"application/json","data":{"id":11,"message":"direct"}}`,
	} {
		if err := s.redis.XAdd(t.Context(), &redis.XAddArgs{Stream: "orders", Values: map[string]any{"data": data}}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	wantDead := len(deadLettered) + 1 // + the raw stream entry
	waitFor(t, time.Minute, "drained", func() bool {
		return len(s.deadLetterIndex()) >= wantDead && s.received.distinct() >= 2 &&
			s.pending("orders") == 0 && s.pending("orders-deadletter") == 0
	})
	list := s.listDeadLetters()
	if len(list) != wantDead {
		t.Fatalf("%d dead letters, want %d: %+v", len(list), wantDead, list)
	}
	for name, in := range deadLettered {
		found := false
		for _, dl := range list {
			found = found || strings.Contains(dl.Reason, in.reason)
		}
		if !found {
			var reasons []string
			for _, dl := range list {
				reasons = append(reasons, dl.Reason)
			}
			t.Errorf("%s: no dead letter with reason %q among %q", name, in.reason, reasons)
		}
	}
	raw := false
	for _, dl := range list {
		raw = raw || (string(dl.Data) == "not a cloudevent" && strings.Contains(dl.Reason, "not a CloudEvent"))
	}
	if !raw {
		t.Error("the raw stream entry is not among the dead letters")
	}
	counts, _, _ := s.received.snapshot()
	if len(counts) != 2 || counts[10] != 1 || counts[11] != 1 {
		t.Errorf("processed %v, want orders 10 and 11 once each", counts)
	}
	if s.Sub.App.Exited() {
		t.Error("the subscriber died")
	}
}

// TestBadInputRetriesRunOutIntoTheDeadLetterTopic fails every delivery of
// one order with RETRY until the resiliency policy's retries run out. On
// every runtime the order must end up as a dead letter, not be lost: from
// components-contrib 1.17 (#4208) the Redis component acknowledges such a
// message once the retries are spent, so only the dead-letter topic keeps
// it (on 1.16 it was left pending and re-claimed forever).
func TestBadInputRetriesRunOutIntoTheDeadLetterTopic(t *testing.T) {
	s := startSystem(t, options{sub: func(c *subscriber.Config) { c.Faults.AlwaysFail = 21 }})
	s.publish(func(c *publisher.Config) { c.Count, c.StartID, c.Interval = 3, 20, 0 })
	// Ten retries, 0.5 s growing to 4 s apart: about 26 s.
	waitFor(t, 2*time.Minute, "orders 20 and 22 processed, order 21 dead-lettered, nothing pending", func() bool {
		return s.received.distinct() == 2 && slices.Contains(s.deadLetterIndex(), "order-21") &&
			s.pending("orders") == 0 && s.pending("orders-deadletter") == 0
	})
	counts, _, _ := s.received.snapshot()
	if counts[20] != 1 || counts[22] != 1 || counts[21] != 0 {
		t.Errorf("processed %v, want orders 20 and 22 once each and 21 never", counts)
	}
	if !logged(s, "Order processing failed; it will be retried") {
		t.Error("the failing deliveries were not logged as retried")
	}
}

// TestDeadLettersReplayAfterTheFix runs the dead-letter life cycle on real
// processes: a subscriber with a bug drops orders ≥ 100; they are kept as
// dead letters; `deadletters list` shows them; the fixed subscriber is
// deployed; `deadletters replay` sends them back and they are processed
// once; an order published again after processing is not applied twice.
func TestDeadLettersReplayAfterTheFix(t *testing.T) {
	s := startSystem(t, options{sub: func(c *subscriber.Config) { c.Faults.RejectFrom = 100 }})
	s.publish(func(c *publisher.Config) { c.Count, c.StartID, c.Interval = 4, 98, 0 })
	waitFor(t, time.Minute, "two processed and two dead-lettered", func() bool {
		return s.received.distinct() == 2 && len(s.deadLetterIndex()) == 2 && s.pending("orders-deadletter") == 0
	})
	out := s.deadletters("list")
	if !strings.Contains(out, "order-100") || !strings.Contains(out, "order-101") || !strings.Contains(out, "2 dead letter(s)") {
		t.Fatalf("deadletters list:\n%s", out)
	}

	// Deploy the fix: the same subscriber without the bug.
	s.Sub.Reconfigure(func(c *subscriber.Config) { c.Faults.RejectFrom = 0 })
	restart(t, s.Sub.App)
	if err := proc.WaitApp(t.Context(), s.Sub.App, s.Sub.Port); err != nil {
		t.Fatal(err)
	}
	if out := s.deadletters("replay", "-id", "order-100"); !strings.Contains(out, "1 dead letter(s) replayed") {
		t.Fatalf("replay -id order-100:\n%s", out)
	}
	waitFor(t, time.Minute, "order 100 processed", func() bool { return s.received.distinct() == 3 })
	if out := s.deadletters("list"); strings.Contains(out, "order-100") || !strings.Contains(out, "order-101") {
		t.Fatalf("after replaying order-100, list:\n%s", out)
	}
	s.deadletters("replay")
	waitFor(t, time.Minute, "order 101 processed and nothing left", func() bool {
		return s.received.distinct() == 4 && len(s.deadLetterIndex()) == 0 && s.pending("orders") == 0
	})

	// The same order again (a replay of an id already processed): no second effect.
	s.publish(func(c *publisher.Config) { c.Count, c.StartID, c.Interval = 1, 100, 0 })
	waitFor(t, time.Minute, "the duplicate acknowledged", func() bool {
		return logged(s, "Duplicate delivery") && s.pending("orders") == 0
	})
	for id, v := range s.versions("statestore||subscriber/order/", 102) {
		if id >= 98 && v != 1 {
			t.Errorf("order %d's record written %d times, want once", id, v)
		}
	}
	counts, _, _ := s.received.snapshot()
	for id, c := range counts {
		if c != 1 {
			t.Errorf("order %d processed %d times", id, c)
		}
	}
}

// deadletters runs the deadletters binary beside the publisher's sidecar.
func (s *sys) deadletters(args ...string) string {
	s.t.Helper()
	cmd := exec.CommandContext(s.t.Context(), binDir+"/deadletters", args...)
	cmd.Env = append(cmd.Environ(), appenv.Set(appenv.DaprGRPCEndpoint, s.PubDaprd.GRPCAddr()), appenv.Set(appenv.DaprAPIToken, s.Secrets.APIToken))
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("deadletters %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// listDeadLetters reads the dead letters from Redis as the store keeps them.
func (s *sys) listDeadLetters() []store.DeadLetter {
	var out []store.DeadLetter
	for _, id := range s.deadLetterIndex() {
		raw, err := s.redis.HGet(s.t.Context(), "statestore||subscriber/deadletter/"+id, "data").Result()
		if err != nil {
			s.t.Fatalf("dead letter %s listed but not stored: %v", id, err)
		}
		var dl store.DeadLetter
		if err := json.Unmarshal([]byte(raw), &dl); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}
