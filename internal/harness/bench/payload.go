package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SentAtLayout is the layout of an order's sent_at: fixed width, so that
// every payload of a run has the same size.
const SentAtLayout = "2006-01-02T15:04:05.000000Z07:00"

// Order is the benchmark's message: the original example's order plus the time it was
// meant to be sent.
type Order struct {
	ID      int64  `json:"id"`
	Message string `json:"message"`
	SentAt  string `json:"sent_at"`
}

// Payload returns order id as JSON, {"id":N,"message":"...","sent_at":"..."},
// with the original example's message ("Hello from publisher - message N") padded with
// dots, or cut, so that the whole payload is size bytes. The message keeps at
// least one byte, so a payload is never shorter than that minimum (about 66
// bytes): ask for 60 and you get the minimum, which is the original example's size class.
func Payload(id int64, size int, sentAt time.Time) []byte {
	msg := "Hello from publisher - message " + strconv.FormatInt(id, 10)
	stamp := sentAt.UTC().Format(SentAtLayout)
	fixed := len(`{"id":,"message":"","sent_at":""}`) + len(strconv.FormatInt(id, 10)) + len(stamp)
	switch room := size - fixed; {
	case room < 1:
		msg = msg[:1]
	case room < len(msg):
		msg = msg[:room]
	default:
		msg += strings.Repeat(".", room-len(msg))
	}
	b := make([]byte, 0, fixed+len(msg))
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"message":"`...)
	b = append(b, msg...) // no characters that need escaping
	b = append(b, `","sent_at":"`...)
	b = append(b, stamp...)
	b = append(b, `"}`...)
	return b
}

// DecodePayload parses a Payload the way a consumer would (encoding/json),
// and returns the order's id. The baselines decode every message so that
// they do the same work per message as the system's subscriber.
func DecodePayload(b []byte) (int64, error) {
	var o Order
	if err := json.Unmarshal(b, &o); err != nil {
		return 0, fmt.Errorf("decode payload: %w", err)
	}
	if o.Message == "" {
		return 0, fmt.Errorf("decode payload: no message in %.80q", b)
	}
	return o.ID, nil
}
