package httpch

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"dapr-pub-sub/internal/subscriber/handler"
)

// sdkEvent has the fields and types the SDK's HTTP service decodes a
// delivery into; a body that does not fit it makes the SDK answer 303.
type sdkEvent struct {
	ID, SpecVersion, Type, Source, DataContentType string
	Data                                           json.RawMessage
	DataBase64                                     string `json:"data_base64"`
	Subject, Topic, PubsubName, TraceID            string
	TraceParent                                    string
}

// guardBody protects a topic route served by the SDK. The SDK answers 303
// to a body it cannot decode (empty, not a JSON object, a field of the
// wrong type), and daprd takes any status but 2xx and 404 as "retry": the
// event would be retried and never processed. guardBody turns such a body
// into a CloudEvent that carries it as data_base64, so the handler sees it,
// cannot decode an order from it, and drops it to the dead-letter topic.
func guardBody(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, handler.MaxBodyBytes+1))
		reason := ""
		var ev sdkEvent
		switch {
		case err != nil:
			reason = "reading the body failed: " + err.Error()
		case len(body) > handler.MaxBodyBytes:
			reason = "the body is over the limit of 4 MiB"
			body = body[:handler.MaxBodyBytes]
		case len(bytes.TrimSpace(body)) == 0:
			reason = "the body is empty"
		case json.Unmarshal(body, &ev) != nil:
			reason = "the body is not a CloudEvent the SDK can decode"
		}
		if reason != "" {
			sum := sha256.Sum256(body)
			id := "undecodable-" + hex.EncodeToString(sum[:8])
			log.Error("Delivery body cannot be decoded; dropping it to the dead-letter topic",
				"path", r.URL.Path, "event_id", id, "reason", reason, "bytes", len(body))
			body, _ = json.Marshal(map[string]string{
				"id": id, "specversion": "1.0", "datacontenttype": "application/octet-stream",
				"data_base64": base64.StdEncoding.EncodeToString(body),
			})
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if !log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		// At debug level, each delivery as daprd sent it and as it was
		// answered: the evidence when a delivery goes missing.
		log.Debug("Delivery request", "path", r.URL.Path, "event_id", ev.ID, "bytes", len(body))
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log.Debug("Delivery answered", "path", r.URL.Path, "event_id", ev.ID, "status", rec.status, "body", string(bytes.TrimSpace(rec.body)))
	})
}

// answerRecorder passes a response through and keeps its status and body.
type answerRecorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (a *answerRecorder) WriteHeader(code int) {
	a.status = code
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	a.body = append(a.body, b...)
	return a.ResponseWriter.Write(b)
}
