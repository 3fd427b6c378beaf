package handler

import "encoding/json"

// MaxBodyBytes bounds a delivery's body on every transport: four times
// daprd's --max-body-size in the launcher (1 MiB), so that whatever daprd
// accepted for publishing arrives whole, even as data_base64 in a
// CloudEvent.
const MaxBodyBytes = 4 << 20

// CloudEvent is the part of a CloudEvent the subscriber reads: the event
// of a bulk entry (which a transport turns into a common.TopicEvent), or
// the original message of a dead letter.
type CloudEvent struct {
	ID              string          `json:"id"`
	Topic           string          `json:"topic"`
	PubsubName      string          `json:"pubsubname"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
	TraceParent     string          `json:"traceparent"`
}
