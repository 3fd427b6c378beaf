package proc

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
)

// BrokerLog is where the lines of a broker other than Redis go in a local
// run: every line to its own file, and, between Arm (the system is up) and
// Disarm (it stops), the lines at an error level to the console too — so that a broker's
// trouble during the run is seen, and its start-up chatter (RabbitMQ's
// hundreds of info lines, a NATS node's refused routes while the others
// start) is not. Safe for concurrent use.
type BrokerLog struct {
	Path    string
	file    *os.File
	console io.Writer
	armed   atomic.Bool

	mu      sync.Mutex
	partial []byte
}

// brokerProblem matches a broker line at an error level: RabbitMQ's
// [error], NATS's [ERR] and [FTL], mosquitto's "Error: …", a Go program's
// level=ERROR.
var brokerProblem = regexp.MustCompile(`(?i)\[(error|err|ftl|fatal|critical)\]|\berror\b`)

// OpenBrokerLog creates (or empties) the file at path for the broker's
// lines; console gets the problems once armed.
func OpenBrokerLog(path string, console io.Writer) (*BrokerLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &BrokerLog{Path: path, file: f, console: console}, nil
}

// Arm starts passing the error-level lines to the console.
func (l *BrokerLog) Arm() { l.armed.Store(true) }

// Disarm stops it again, for the broker's stop: what it says then (an
// Erlang logger complaining that its output went away) is its own
// business.
func (l *BrokerLog) Disarm() { l.armed.Store(false) }

// Write writes p to the file, and each complete error-level line of it to
// the console when armed.
func (l *BrokerLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.file.Write(p); err != nil {
		return 0, err
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := l.partial[:i+1]
		if l.armed.Load() && brokerProblem.Match(line) {
			if _, err := l.console.Write(line); err != nil {
				return len(p), err
			}
		}
		l.partial = l.partial[i+1:]
	}
}

// Close closes the file.
func (l *BrokerLog) Close() error { return l.file.Close() }
