// Package web is the subscriber's live page — its files, embedded in the
// binary — and the key that opens it.
package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
)

// Files are the page (index.html) and its script and style.
//
//go:embed index.html app.js style.css
var Files embed.FS

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
