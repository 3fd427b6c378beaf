//go:build !dapr1_16

// Package compat lets the components patched here build against every
// components-contrib version the project runs: v1.16 has no terminal or
// retriable publish errors (the launcher builds it with the tag dapr1_16),
// where they are plain errors, as in v1.16's own components.
package compat

import "github.com/dapr/components-contrib/pubsub"

// TerminalError is pubsub.NewTerminalError: a publish error that no retry
// can mend.
func TerminalError(err error) error { return pubsub.NewTerminalError(err) }

// RetriableError is pubsub.NewRetriableError.
func RetriableError(err error) error { return pubsub.NewRetriableError(err) }
