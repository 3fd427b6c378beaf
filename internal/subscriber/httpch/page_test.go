package httpch

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/live"
)

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// pageMux is the part of NewService the page adds: the token middleware
// with page access, the page's routes, and one route it must not open.
func pageMux(t *testing.T, token string, st *store.Store) (http.Handler, *live.Feed) {
	t.Helper()
	h := handler.New(handler.Config{Store: st, Log: quietLog(), Out: io.Discard, Timeout: time.Second})
	feed := live.NewFeed(0, 0)
	t.Cleanup(feed.Close)
	page := live.New(live.Options{Feed: feed, Stats: &h.Stats, Store: h.Store, Log: quietLog()})
	mux := chi.NewRouter()
	mux.Use(requireAppToken(token, quietLog(), newPageAccess(Options{Port: 8001, AppToken: token, Page: page}), "/healthz"))
	mux.Get("/stats", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Post("/orders", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	page.Mount(mux)
	return mux, feed
}

func TestPageAccess(t *testing.T) {
	const token = "app-secret"
	key := PageKey(token)
	if key == "" || strings.Contains(key, token) || key == PageKey("other") {
		t.Fatalf("PageKey(%q) = %q: want a non-empty key that is not the token and differs per token", token, key)
	}
	cookie := &http.Cookie{Name: "live_page_8001", Value: key}
	mux, _ := pageMux(t, token, store.New(&storetest.Mem{}, "statestore", "subscriber"))

	tests := map[string]struct {
		method, path string
		header       string       // app token header
		cookie       *http.Cookie // nil for none
		want         int
		wantType     string
	}{
		"page without anything":           {method: "GET", path: "/", want: 401},
		"page with a wrong key":           {method: "GET", path: "/?key=nope", want: 401},
		"page with the token as key":      {method: "GET", path: "/?key=" + token, want: 401},
		"page with the key: cookie, back": {method: "GET", path: "/?key=" + key, want: 303},
		"page with the cookie":            {method: "GET", path: "/", cookie: cookie, want: 200, wantType: "text/html"},
		"page with the app token":         {method: "GET", path: "/", header: token, want: 200, wantType: "text/html"},
		"script with the cookie":          {method: "GET", path: "/ui/app.js", cookie: cookie, want: 200, wantType: "text/javascript"},
		"style with the cookie":           {method: "GET", path: "/ui/style.css", cookie: cookie, want: 200, wantType: "text/css"},
		"no such asset":                   {method: "GET", path: "/ui/nope.js", cookie: cookie, want: 404},
		"no listing of the assets":        {method: "GET", path: "/ui/", cookie: cookie, want: 404},
		"dead letters with the cookie":    {method: "GET", path: "/api/deadletters", cookie: cookie, want: 200, wantType: "application/json"},
		"dead letters without":            {method: "GET", path: "/api/deadletters", want: 401},
		"backlog with the cookie":         {method: "GET", path: "/api/backlog", cookie: cookie, want: 404}, // no keeper configured
		"backlog without":                 {method: "GET", path: "/api/backlog", want: 401},
		"events without":                  {method: "GET", path: "/events", want: 401},
		"events with a stale cookie":      {method: "GET", path: "/events", cookie: &http.Cookie{Name: "live_page_8001", Value: PageKey("old")}, want: 401},
		"key on another route":            {method: "GET", path: "/api/deadletters?key=" + key, want: 401},
		"cookie does not open /stats":     {method: "GET", path: "/stats", cookie: cookie, want: 401},
		"cookie does not open /orders":    {method: "POST", path: "/orders", cookie: cookie, want: 401},
		"the token still opens /stats":    {method: "GET", path: "/stats", header: token, want: 200},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.header != "" {
				req.Header.Set(AppTokenHeader, tc.header)
			}
			if tc.cookie != nil {
				req.AddCookie(tc.cookie)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, rec.Code, tc.want, rec.Body)
			}
			if tc.wantType != "" && !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.wantType) {
				t.Errorf("Content-Type %q, want %s", rec.Header().Get("Content-Type"), tc.wantType)
			}
			if body := rec.Body.String(); strings.Contains(body, token) || strings.Contains(body, key) {
				t.Errorf("the response shows the token or the key: %s", body)
			}
			if rec.Code == 200 && tc.wantType == "text/html" && rec.Header().Get("Content-Security-Policy") == "" {
				t.Error("the page has no Content-Security-Policy")
			}
		})
	}

	t.Run("the key sets an HttpOnly SameSite=Strict cookie and leaves the URL", func(t *testing.T) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?key="+key, nil))
		if loc := rec.Header().Get("Location"); loc != "/" {
			t.Errorf("Location %q, want /", loc)
		}
		cs := rec.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v, want one", cs)
		}
		c := cs[0]
		if c.Name != "live_page_8001" || c.Value != key || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
			t.Errorf("cookie %+v, want live_page_8001=<key>, HttpOnly, SameSite=Strict, Path=/", c)
		}
	})

	t.Run("no app token: the page is open, like every route", func(t *testing.T) {
		open, _ := pageMux(t, "", store.New(&storetest.Mem{}, "statestore", "subscriber"))
		rec := httptest.NewRecorder()
		open.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != 200 {
			t.Errorf("GET / = %d, want 200", rec.Code)
		}
	})
}

// TestPageStreamDoesNotHoldUpShutdown serves the real SDK service with an
// open event stream: GracefulStop (http.Server.Shutdown, which waits for
// active connections up to 5 s) must return at once after the feed closes.
func TestPageStreamDoesNotHoldUpShutdown(t *testing.T) {
	feed := live.NewFeed(0, 0)
	h := handler.New(handler.Config{Store: store.New(&storetest.Mem{}, "statestore", "subscriber"), Log: quietLog(), Out: io.Discard,
		Timeout: time.Second, PubSub: "pubsub", Topic: "orders", Observe: feed.Publish})
	o := serviceOptions(t, h)
	o.Page = live.New(live.Options{Feed: feed, Stats: &h.Stats, Store: h.Store, Log: quietLog()})
	svc, err := NewService(o)
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start() //nolint:errcheck // GracefulStop ends it
	base := "http://" + o.ListenAddr()
	waitServing(t, base)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/events", nil)
	req.AddCookie(&http.Cookie{Name: fmt.Sprintf("live_page_%d", o.Port), Value: PageKey(o.AppToken)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %d", resp.StatusCode)
	}
	if ev := firstEvent(t, resp.Body); ev != "event: snapshot\n" {
		t.Fatalf("the stream's first line %q, want the snapshot event", ev)
	}

	start := time.Now()
	feed.Close()
	if err := svc.GracefulStop(); err != nil {
		t.Fatalf("GracefulStop with a stream open: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("GracefulStop took %s with a stream open, want well under the SDK's 5 s", d)
	}
}

// firstEvent reads the first line of an event stream, waiting at most 5 s.
func firstEvent(t *testing.T, body io.Reader) string {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(body).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return ""
}
