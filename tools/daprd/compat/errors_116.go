//go:build dapr1_16

package compat

// TerminalError is err: components-contrib v1.16 has no terminal errors.
func TerminalError(err error) error { return err }

// RetriableError is err: components-contrib v1.16 has no retriable errors.
func RetriableError(err error) error { return err }
