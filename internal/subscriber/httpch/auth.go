package httpch

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
)

// AppTokenHeader is where daprd puts APP_API_TOKEN when it calls the app.
const AppTokenHeader = "dapr-api-token"

// PageKeyParam is the query parameter that carries the live page's key
// (PageKey) in the URL the launcher prints.
const PageKeyParam = "key"

// pageAccess lets a browser onto the live page, which cannot send
// AppTokenHeader (an EventSource sets no headers). GET /?key=<page key>
// sets an HttpOnly, SameSite=Strict cookie holding the key and redirects to
// / (so the key leaves the address bar); the page's routes then accept the
// cookie. The key is not the app token and opens nothing else.
type pageAccess struct {
	key    string            // PageKey(app token)
	cookie string            // cookie name; per port, as cookies are shared by every port of a host
	routes func(string) bool // the page's paths
}

// PageKey is the key that opens the live page of a subscriber whose
// APP_API_TOKEN is appToken, "" when there is none. It is derived from the
// token (HMAC-SHA256) rather than being the token, so that whoever holds it
// (the URL the launcher prints, the browser's cookie) can view the page but
// cannot call the subscriber's other routes, and cannot recover the token.
// A new token (every `make run`) gives a new key.
func PageKey(appToken string) string {
	if appToken == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(appToken))
	m.Write([]byte("dapr-pub-sub live page v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// newPageAccess is the access to o's page: nil (the token or nothing)
// when there is no page or no token.
func newPageAccess(o Options) *pageAccess {
	if o.Page == nil || o.AppToken == "" {
		return nil
	}
	return &pageAccess{key: PageKey(o.AppToken), cookie: fmt.Sprintf("live_page_%d", o.Port), routes: o.Page.Owns}
}

// requireAppToken answers 401 to every request that does not carry token in
// AppTokenHeader, compared in constant time, except the open paths (the
// probes and metrics) and, with page set, the live page's routes for a
// browser that holds the page key. The SDK's HTTP service checks the token
// on invocation routes but not on topic routes or /dapr/subscribe, so this
// sits in front of all of them. An empty token turns the check off.
func requireAppToken(token string, log *slog.Logger, page *pageAccess, open ...string) func(http.Handler) http.Handler {
	want := []byte(token)
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, p := range open {
				if r.URL.Path == p {
					next.ServeHTTP(w, r)
					return
				}
			}
			if subtle.ConstantTimeCompare([]byte(r.Header.Get(AppTokenHeader)), want) == 1 {
				next.ServeHTTP(w, r)
				return
			}
			if page != nil && page.routes(r.URL.Path) && page.allow(w, r) {
				if r.URL.Query().Has(PageKeyParam) {
					http.Redirect(w, r, "/", http.StatusSeeOther)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			log.Warn("Refused a call without the app API token", "path", r.URL.Path, "remote", r.RemoteAddr)
			if page != nil && page.routes(r.URL.Path) {
				http.Error(w, "the live page needs its key: open the URL `make run` printed (http://127.0.0.1:<port>/?key=...)", http.StatusUnauthorized)
				return
			}
			http.Error(w, "missing or wrong dapr-api-token", http.StatusUnauthorized)
		})
	}
}

// allow reports whether r holds the page key, in its cookie or, on a GET
// of /, in PageKeyParam; for the latter it sets the cookie.
func (p *pageAccess) allow(w http.ResponseWriter, r *http.Request) bool {
	if c, err := r.Cookie(p.cookie); err == nil && p.matches(c.Value) {
		return true
	}
	if r.Method != http.MethodGet || r.URL.Path != "/" || !p.matches(r.URL.Query().Get(PageKeyParam)) {
		return false
	}
	http.SetCookie(w, &http.Cookie{Name: p.cookie, Value: p.key, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return true
}

func (p *pageAccess) matches(v string) bool {
	return v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(p.key)) == 1
}
