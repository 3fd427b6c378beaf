package subscriber

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
)

// AppTokenHeader is where daprd puts APP_API_TOKEN when it calls the app.
const AppTokenHeader = "dapr-api-token"

// requireAppToken answers 401 to every request that does not carry token in
// AppTokenHeader, compared in constant time, except the open paths (the
// liveness probe). The SDK's HTTP service checks the token on invocation
// routes but not on topic routes or /dapr/subscribe, so this sits in front
// of all of them. An empty token turns the check off.
func requireAppToken(token string, log *slog.Logger, open ...string) func(http.Handler) http.Handler {
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
			if subtle.ConstantTimeCompare([]byte(r.Header.Get(AppTokenHeader)), want) != 1 {
				log.Warn("Refused a call without the app API token", "path", r.URL.Path, "remote", r.RemoteAddr)
				http.Error(w, "missing or wrong dapr-api-token", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
