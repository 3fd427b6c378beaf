//go:build soak

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/testutil"
)

// TestSoak is `make soak`: orders flow at a steady rate while the
// subscriber app alone is restarted again and again — SIGTERM and restart,
// then kill -9 with the app down 1–2 s, in turn — as a kubelet restarts a
// crashing container while its daprd keeps delivering. Then it stops
// publishing, waits for the system to drain and checks every acknowledged
// order: processed once, none lost, nothing pending. SOAK_CHANNEL,
// SOAK_RESTARTS (default 500), SOAK_RATE (orders/s, default 400), SOAK_UP
// (how long the app runs between restarts, default 1s) and SOAK_DOWN (how
// long a killed app stays down, default 1–2 s) shape it; SOAK_REPORT
// names a file the result row is appended to.
func TestSoak(t *testing.T) {
	channel, err := system.ParseChannel(os.Getenv("SOAK_CHANNEL"))
	if err != nil {
		t.Fatal(err)
	}
	restarts, rate := testutil.EnvInt(t, "SOAK_RESTARTS", 500), testutil.EnvInt(t, "SOAK_RATE", 400)
	up, down := testutil.EnvDuration(t, "SOAK_UP", time.Second), testutil.EnvDuration(t, "SOAK_DOWN", 0)
	s := startSystem(t, options{channel: channel, noAppHealthCheck: os.Getenv("SOAK_NO_HEALTH_CHECK") != ""})
	pub, err := s.StartPublisher(func(c *publisher.Config) { c.Count, c.Rate, c.Attempts = publisher.Forever, float64(rate), 60 })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range restarts {
		app := s.Sub.App
		if i%2 == 0 {
			app.Signal(syscall.SIGTERM)
			if err := waitExit(t, app); err != nil {
				t.Errorf("restart %d: the subscriber exited with %v on SIGTERM, want 0", i, err)
			}
		} else {
			app.Signal(syscall.SIGKILL)
			_ = waitExit(t, app) // killed: the exit error is the point
			pause := down
			if pause == 0 {
				pause = time.Second + time.Duration(i%10)*100*time.Millisecond // 1–2 s
			}
			time.Sleep(pause) // the app is down: the fault itself
		}
		restart(t, app)
		if err := proc.WaitApp(t.Context(), app, s.Sub.Port); err != nil {
			t.Fatal(err)
		}
		time.Sleep(up) // the app runs before the next fault
		if i%25 == 24 {
			t.Logf("after %d restarts: %d Redis client connections, %d pending", i+1, s.redisClients(), s.pending("orders"))
		}
		if pub.Exited() {
			t.Fatalf("the publisher stopped after %d restarts: %v\n%s", i, pub.Err(), pub.Tail())
		}
	}
	lastRestart := time.Now()
	pub.Signal(syscall.SIGTERM)
	if err := waitExit(t, pub); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Tail())
	}
	n := s.publishedOrders()
	// Drained: the group has read every entry and none is pending, so
	// nothing more can be delivered (an order lost on the way never will).
	drained := func() bool { return s.pending("orders") == 0 && s.lag("orders") == 0 }
	deadline := lastRestart.Add(10 * time.Minute)
	for !drained() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	drain := time.Since(lastRestart)
	// Counted once drained: a count taken before the last acknowledgements
	// misses the orders they were for.
	processed := s.countKeys("statestore||subscriber/order/*")
	t.Logf("at the end: %d Redis client connections", s.redisClients())
	pending := s.pending("orders")
	lost := s.checkProcessedOnce(proc.SubscriberID, n)
	dups := 0
	for _, l := range s.received.logLines() {
		if strings.Contains(l, "Duplicate delivery") {
			dups++
		}
	}
	row := fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d | %.1f s |", s.Env.Channel, restarts, n, processed, dups, lost, pending, drain.Seconds())
	t.Logf("channel | restarts | published | processed | duplicate deliveries | lost | pending at the end | drain after the last restart\n%s\n(%s of restarts)", row, lastRestart.Sub(start).Round(time.Second))
	if f := os.Getenv("SOAK_REPORT"); f != "" {
		if err := appendLine(f, row); err != nil {
			t.Error(err)
		}
	}
	if lost > 0 {
		s.explainLost(n)
	}
	if pending != 0 || processed+lost != n {
		t.Errorf("not drained 10 min after the last restart: %d of %d processed, %d pending", processed, n, pending)
	}
}

// redisClients is how many client connections Redis has (CLIENT LIST).
func (s *sys) redisClients() int {
	list, err := s.redis.ClientList(s.t.Context()).Result()
	if err != nil {
		return -1
	}
	return strings.Count(list, "\n")
}

// publishedOrders reads the orders stream and returns how many distinct
// orders it holds; the publisher numbers them from 0 without gaps.
func (s *sys) publishedOrders() int {
	entries, err := s.redis.XRange(s.t.Context(), "orders", "-", "+").Result()
	if err != nil {
		s.t.Fatal(err)
	}
	ids := map[int64]bool{}
	for _, e := range entries {
		var ce struct {
			Data json.RawMessage `json:"data"`
		}
		raw, _ := e.Values["data"].(string)
		if json.Unmarshal([]byte(raw), &ce) != nil {
			continue
		}
		if o, err := order.Decode(ce.Data); err == nil {
			ids[o.ID] = true
		}
	}
	for id := range int64(len(ids)) {
		if !ids[id] {
			s.t.Fatalf("order %d is missing from the stream of %d orders", id, len(ids))
		}
	}
	return len(ids)
}

func appendLine(file, line string) error {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
