// Package web is the subscriber's live page: its files, embedded in the
// binary. The key that opens it is httpch.PageKey.
package web

import "embed"

// Files are the page (index.html) and its script and style.
//
//go:embed index.html app.js style.css
var Files embed.FS
