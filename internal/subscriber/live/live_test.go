package live

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/subscriber/handler"
)

func testDelivery(id int64, outcome string) handler.Delivery {
	o := order.New(id)
	return handler.Delivery{Time: time.Now(), EventID: fmt.Sprintf("order-%d", id), Topic: "orders", Order: &o, Outcome: outcome}
}

func eventIDs(ds []handler.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.EventID
	}
	return out
}

func TestFeedFansOutToEveryClient(t *testing.T) {
	f := NewFeed(10, 10)
	_, a, err := f.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	_, b, _ := f.Subscribe()
	f.Publish(testDelivery(1, handler.OutcomeSuccess))
	for name, s := range map[string]*Subscription{"a": a, "b": b} {
		select {
		case d := <-s.C:
			if d.EventID != "order-1" {
				t.Errorf("client %s got %q, want order-1", name, d.EventID)
			}
		default:
			t.Errorf("client %s got nothing", name)
		}
	}
}

func TestFeedSnapshotIsTheLastDeliveriesInOrder(t *testing.T) {
	tests := map[string]struct {
		keep, publish int
		want          []string
	}{
		"empty":          {keep: 3, publish: 0, want: []string{}},
		"fewer than N":   {keep: 3, publish: 2, want: []string{"order-0", "order-1"}},
		"exactly N":      {keep: 3, publish: 3, want: []string{"order-0", "order-1", "order-2"}},
		"wrapped around": {keep: 3, publish: 7, want: []string{"order-4", "order-5", "order-6"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := NewFeed(tc.keep, 1)
			for i := range tc.publish {
				f.Publish(testDelivery(int64(i), handler.OutcomeSuccess))
			}
			recent, s, err := f.Subscribe()
			if err != nil {
				t.Fatal(err)
			}
			if got := eventIDs(recent); !slices.Equal(got, tc.want) {
				t.Errorf("snapshot %v, want %v", got, tc.want)
			}
			// Nothing from before the snapshot comes again on C.
			f.Publish(testDelivery(99, handler.OutcomeSuccess))
			if d := <-s.C; d.EventID != "order-99" {
				t.Errorf("first live delivery %q, want order-99", d.EventID)
			}
		})
	}
}

func TestFeedSlowClientDoesNotBlockPublish(t *testing.T) {
	f := NewFeed(5, 4)
	_, slow, _ := f.Subscribe() // never reads
	const n = 10000
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			f.Publish(testDelivery(int64(i), handler.OutcomeSuccess))
		}
	}()
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a client that does not read")
	}
	if d := f.Dropped(slow); d != n-4 {
		t.Errorf("slow client missed %d, want %d (all but its buffer of 4)", d, n-4)
	}
	if len(slow.C) != 4 {
		t.Errorf("slow client holds %d, want its buffer of 4", len(slow.C))
	}
	if f.TotalDropped() < n-4 {
		t.Errorf("TotalDropped = %d, want ≥ %d", f.TotalDropped(), n-4)
	}
}

func TestFeedUnsubscribeFreesTheClient(t *testing.T) {
	f := NewFeed(5, 1)
	_, s, _ := f.Subscribe()
	if f.Clients() != 1 {
		t.Fatalf("Clients = %d, want 1", f.Clients())
	}
	f.Unsubscribe(s)
	f.Unsubscribe(s) // harmless
	if f.Clients() != 0 {
		t.Fatalf("Clients = %d after Unsubscribe, want 0", f.Clients())
	}
	f.Publish(testDelivery(1, handler.OutcomeSuccess))
	f.Publish(testDelivery(2, handler.OutcomeSuccess))
	if len(s.C) != 0 || f.Dropped(s) != 0 || f.TotalDropped() != 0 {
		t.Errorf("an unsubscribed client still gets deliveries: %d buffered, %d dropped", len(s.C), f.Dropped(s))
	}
}

func TestFeedRateCountsTheLastMinutePerSecond(t *testing.T) {
	f := NewFeed(5, 1)
	t0 := time.Unix(1_000_000, 0)
	at := func(sec int64, n int) {
		for range n {
			f.Publish(handler.Delivery{Time: t0.Add(time.Duration(sec) * time.Second), Outcome: handler.OutcomeSuccess})
		}
	}
	at(0, 3)  // falls out of the window below
	at(50, 2) // 2 at second 50
	at(60, 5) // same ring slot as second 0: replaces it
	at(69, 1)
	rate := f.Rate(t0.Add(69 * time.Second)) // window: seconds 10..69
	if len(rate) != RateWindow {
		t.Fatalf("len = %d, want %d", len(rate), RateWindow)
	}
	want := make([]int64, RateWindow)
	want[50-10], want[60-10], want[69-10] = 2, 5, 1
	if !slices.Equal(rate, want) {
		t.Errorf("rate = %v\nwant   %v", rate, want)
	}
	if later := f.Rate(t0.Add(200 * time.Second)); slices.Max(later) != 0 {
		t.Errorf("two minutes on, rate = %v, want all 0", later)
	}
}

func TestFeedCloseEndsStreamsAndRefusesNewOnes(t *testing.T) {
	f := NewFeed(5, 1)
	f.Close()
	f.Close() // harmless
	select {
	case <-f.Done():
	default:
		t.Fatal("Done not closed")
	}
	if _, _, err := f.Subscribe(); !errors.Is(err, ErrFeedClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrFeedClosed", err)
	}
	f.Publish(testDelivery(1, handler.OutcomeSuccess)) // still safe
}

func TestFeedIsSafeForConcurrentUse(t *testing.T) {
	f := NewFeed(20, 8)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				f.Publish(testDelivery(int64(p*1000+i), handler.OutcomeSuccess))
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				_, s, err := f.Subscribe()
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case <-s.C:
				default:
				}
				_ = f.Rate(time.Now())
				f.Unsubscribe(s)
			}
		}()
	}
	wg.Wait()
	if f.Clients() != 0 {
		t.Errorf("Clients = %d, want 0", f.Clients())
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name, data string
}

// readEvents sends the events of an SSE body to the returned channel,
// which is closed at the end of the stream.
func readEvents(body io.Reader) <-chan sseEvent {
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return sseEvent{}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestEventsStreamSnapshotThenDeliveries(t *testing.T) {
	f := NewFeed(10, 10)
	var stats handler.Stats
	stats.Processed.Add(1)
	f.Publish(testDelivery(1, handler.OutcomeSuccess))
	srv := httptest.NewServer(handleEvents(f, &stats, quietLog()))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	events := readEvents(resp.Body)

	ev := nextEvent(t, events)
	var snap struct {
		Deliveries []liveDelivery  `json:"deliveries"`
		Stats      json.RawMessage `json:"stats"`
	}
	if ev.name != "snapshot" || json.Unmarshal([]byte(ev.data), &snap) != nil {
		t.Fatalf("first event %q %s, want a snapshot", ev.name, ev.data)
	}
	if len(snap.Deliveries) != 1 || snap.Deliveries[0].EventID != "order-1" || *snap.Deliveries[0].ID != 1 {
		t.Errorf("snapshot deliveries %+v, want order-1", snap.Deliveries)
	}
	if !strings.Contains(string(snap.Stats), `"processed":1`) {
		t.Errorf("snapshot stats %s, want processed 1", snap.Stats)
	}

	bad := handler.Delivery{Time: time.Now(), EventID: "evt-x", Topic: "orders", Outcome: handler.OutcomeDrop, Reason: "invalid order: id must be ≥ 0"}
	f.Publish(bad)
	for {
		ev = nextEvent(t, events)
		if ev.name == "delivery" {
			break
		}
	}
	var got liveDelivery
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatal(err)
	}
	if got.EventID != "evt-x" || got.Outcome != handler.OutcomeDrop || got.Reason != bad.Reason || got.ID != nil {
		t.Errorf("delivery %+v, want evt-x dropped with its reason and no order", got)
	}

	// A count that changes reaches the page within about a second.
	stats.Duplicates.Add(1)
	for {
		ev = nextEvent(t, events)
		if ev.name == "stats" && strings.Contains(ev.data, `"duplicates":1`) {
			break
		}
	}
	var s struct{ Rate []int64 }
	if err := json.Unmarshal([]byte(ev.data), &s); err != nil || len(s.Rate) != RateWindow || slices.Max(s.Rate) < 1 {
		t.Errorf("stats %s: want a %d-second rate with the deliveries in it", ev.data, RateWindow)
	}
}

// openEvents serves f's event stream and opens it; it returns the events
// and the stream's URL, and the test's cleanup closes both.
func openEvents(t *testing.T, f *Feed) (<-chan sseEvent, string) {
	t.Helper()
	srv := httptest.NewServer(handleEvents(f, &handler.Stats{}, quietLog()))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return readEvents(resp.Body), srv.URL
}

func TestEventsStreamEndsWhenTheFeedCloses(t *testing.T) {
	f := NewFeed(10, 10)
	events, url := openEvents(t, f)
	nextEvent(t, events) // snapshot
	f.Close()
	select {
	case _, ok := <-events:
		if ok {
			for range events {
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream is still open after Close")
	}
	resp2, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a new stream after Close: %d, want 503", resp2.StatusCode)
	}
}

func TestEventsClientLeavingUnsubscribes(t *testing.T) {
	f := NewFeed(10, 10)
	srv := httptest.NewServer(handleEvents(f, &handler.Stats{}, quietLog()))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, readEvents(resp.Body))
	if f.Clients() != 1 {
		t.Fatalf("Clients = %d, want 1", f.Clients())
	}
	cancel()
	resp.Body.Close()
	for deadline := time.Now().Add(5 * time.Second); f.Clients() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the client is still subscribed after it left")
		}
	}
}

func TestPageDeadLettersNewestFirst(t *testing.T) {
	st := store.New(&storetest.Mem{}, "statestore", "subscriber")
	for i, reason := range []string{"invalid order: id must be ≥ 0", "invalid order: message must not be empty"} {
		dl := store.DeadLetter{EventID: fmt.Sprintf("evt-%d", i), Topic: "orders", Data: []byte(`{"id":-1}`), Reason: reason, ReceivedAt: time.Now()}
		if _, err := st.AddDeadLetter(t.Context(), dl); err != nil {
			t.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	handleDeadLetters(st, quietLog()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/deadletters", nil))
	var got struct {
		Total       int              `json:"total"`
		DeadLetters []pageDeadLetter `json:"dead_letters"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if got.Total != 2 || len(got.DeadLetters) != 2 || got.DeadLetters[0].EventID != "evt-1" || got.DeadLetters[1].Data != `{"id":-1}` {
		t.Errorf("got %+v, want evt-1 then evt-0, data as text", got)
	}

	down := &storetest.Mem{Fail: func(string, string) error { return storetest.ErrUnavailable }}
	rec = httptest.NewRecorder()
	handleDeadLetters(store.New(down, "statestore", "subscriber"), quietLog()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/deadletters", nil))
	if rec.Code != http.StatusBadGateway {
		t.Errorf("store down: %d, want 502", rec.Code)
	}
}

// TestPageBacklogPassesTheKeepersAnswerOn: /api/backlog answers the
// keeper's JSON as it is; a keeper that is down, answers an error or
// something that is not JSON gives 502 with the reason, none configured 404.
func TestPageBacklogPassesTheKeepersAnswerOn(t *testing.T) {
	const backlog = `{"window":"24h0m0s","streams":[{"stream":"orders","length":3,"groups":[{"group":"subscriber","lag":1,"pending":2}]}]}`
	answer := backlog
	keeper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/backlog" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, answer)
	}))
	defer keeper.Close()
	get := func(url string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		handleBacklog(url, quietLog()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/backlog", nil))
		return rec
	}
	if rec := get(keeper.URL + "/backlog"); rec.Code != 200 || rec.Body.String() != backlog || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("keeper up: %d %q %q, want 200 and its JSON", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	answer = "<html>not json"
	if rec := get(keeper.URL + "/backlog"); rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "did not answer JSON") {
		t.Errorf("keeper answers HTML: %d %q, want 502", rec.Code, rec.Body)
	}
	if rec := get(keeper.URL + "/nope"); rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "404") {
		t.Errorf("keeper answers 404: %d %q, want 502 naming the 404", rec.Code, rec.Body)
	}
	keeper.Close()
	if rec := get(keeper.URL + "/backlog"); rec.Code != http.StatusBadGateway {
		t.Errorf("keeper down: %d %q, want 502", rec.Code, rec.Body)
	}
	if rec := get(""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "BACKLOG_URL") {
		t.Errorf("no keeper: %d %q, want 404 naming BACKLOG_URL", rec.Code, rec.Body)
	}
}

// TestLatePageGetsTheLastMinute: a page opened seconds after a burst gets
// the burst in its snapshot's throughput, kept on the server.
func TestLatePageGetsTheLastMinute(t *testing.T) {
	f := NewFeed(100, 10)
	burst := time.Now().Add(-5 * time.Second)
	for i := range 60 {
		d := testDelivery(int64(i), handler.OutcomeSuccess)
		d.Time = burst
		f.Publish(d)
	}
	events, _ := openEvents(t, f)
	ev := nextEvent(t, events)
	var snap struct {
		Stats struct{ Rate []int64 } `json:"stats"`
	}
	if ev.name != "snapshot" || json.Unmarshal([]byte(ev.data), &snap) != nil {
		t.Fatalf("first event %q %s, want a snapshot", ev.name, ev.data)
	}
	if r := snap.Stats.Rate; len(r) != RateWindow || slices.Max(r) != 60 {
		t.Errorf("snapshot rate %v: want the burst of 60 five seconds ago", r)
	}
}
