package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/subscriber/httpch"
)

// chromiumPath is Debian's Chromium, which drives the live page test.
const chromiumPath = "/usr/bin/chromium"

// TestPage opens the subscriber's live page in a real headless Chromium on
// the real system, the way a user does with the URL `make run` prints, and
// watches orders and a dead letter arrive over its event stream, and the
// backlog the retention keeper reports. With
// PAGE_SCREENSHOT=file.png it also saves what the page looks like at the
// end; on failure a screenshot goes to the test's temp folder.
func TestPage(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the live page test drives a real browser and needs %s: apt-get install -y chromium (.ci/run does this)", chromiumPath)
	}
	s := startSystem(t, options{retention: system.Keeper{Interval: time.Second}}) // the backlog refreshed each second
	base := fmt.Sprintf("http://127.0.0.1:%d", s.Sub.Port)

	// Without the key the page stays shut.
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET / without the page key: %d, want 401", resp.StatusCode)
	}

	b := newBrowser(t)
	url := base + "/?key=" + httpch.PageKey(s.Secrets.AppToken)
	if err := chromedp.Do(b.ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	b.waitFor("the page is connected to its event stream", `document.getElementById("status").textContent === "live"`)
	if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || loc != base+"/" {
		b.fatalf("location %q (%v), want %s/: the key must leave the address bar", loc, err, base)
	}
	if html, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err != nil ||
		strings.Contains(html, s.Secrets.AppToken) || strings.Contains(html, httpch.PageKey(s.Secrets.AppToken)) {
		b.fatalf("the page shows the app token or its key (or could not be read: %v)", err)
	}

	const n = 5
	for id := 1; id <= n; id++ {
		if code, body := s.publishHTTP("pubsub", "orders", "application/json", fmt.Sprintf(`{"id":%d,"message":"live page order %d"}`, id, id)); code/100 != 2 {
			t.Fatalf("publish order %d: %d %s", id, code, body)
		}
	}
	b.waitFor(fmt.Sprintf("success count %d", n), fmt.Sprintf(`document.getElementById("count-success").textContent === "%d"`, n))
	b.waitFor("every order id in the list", fmt.Sprintf(`(() => {
		const ids = [...document.querySelectorAll("#orders tbody tr")]
			.filter(r => r.dataset.outcome === "success").map(r => r.cells[1].textContent);
		return [...Array(%d).keys()].every(i => ids.includes(String(i + 1)));
	})()`, n))
	b.waitFor("a non-zero throughput", `document.getElementById("rate-peak").textContent !== "0"`)

	if code, body := s.publishHTTP("pubsub", "orders", "application/json", `{"id":-1,"message":"a bad order"}`); code/100 != 2 {
		t.Fatalf("publish the invalid order: %d %s", code, body)
	}
	b.waitFor("the invalid order among the dead letters", `document.getElementById("deadletters").textContent.includes("id must be ≥ 0")`)
	b.waitFor("drop and dead-letter counts of 1", `document.getElementById("count-drop").textContent === "1" &&
		document.getElementById("count-dead_letter").textContent === "1"`)

	// The backlog from the retention keeper: everything read and
	// acknowledged, every entry still in the stream (inside the window).
	b.waitFor("the backlog: orders and its dead-letter topic, all read and acknowledged", fmt.Sprintf(`(() => {
		const row = (s) => [...document.querySelectorAll("#backlog tbody tr")].find(r => r.dataset.stream === s);
		const done = (r, entries) => r && r.cells[2].textContent === "0" && r.cells[3].textContent === "0" && r.cells[6].textContent === entries;
		return done(row("orders"), "%d") && done(row("orders-deadletter"), "1");
	})()`, n+1))

	// A fresh load shows the stored dead letter with its payload.
	if err := chromedp.Do(b.ctx, chromedp.Reload()); err != nil {
		b.fatalf("reload: %v", err)
	}
	b.waitFor("the stored dead letter with its payload after a reload", `(() => {
		const d = document.querySelector("#deadletters .dl-data");
		return d !== null && d.textContent.includes('"id":-1') && document.getElementById("status").textContent === "live";
	})()`)
	b.waitFor("the counts after a reload", fmt.Sprintf(`document.getElementById("count-success").textContent === "%d"`, n))

	if path := os.Getenv("PAGE_SCREENSHOT"); path != "" {
		b.screenshot(path)
	}
}

// browser is a headless Chromium with one tab, for one test.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab's; no deadline (chromedp.Run's rule)
}

// newBrowser starts Chromium with the flags this machine needs (its network
// is closed: no QUIC, no background traffic, no component updates) and a
// fresh profile; t.Cleanup stops it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return b
}

// waitFor polls the JavaScript predicate in the page until it is true, or
// fails the test (with a screenshot) after 15 s.
func (b *browser) waitFor(what, predicate string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(15*time.Second),
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.fatalf("waiting for %s: %v", what, err)
	}
}

// fatalf fails the test after saving a screenshot and the page's text.
func (b *browser) fatalf(format string, args ...any) {
	b.t.Helper()
	path := filepath.Join(b.t.TempDir(), "live-page.png")
	b.screenshot(path)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	b.t.Fatalf(format+"\nscreenshot: %s\npage text:\n%s", append(args, path, text)...)
}

func (b *browser) screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot: %v", err)
	}
}
