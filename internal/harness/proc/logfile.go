package proc

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
)

// LogFile is where the lines of one process (Redis, a daprd, a broker) go
// in a local run: every line to its own file, and, while armed, the lines
// that stand for a problem to the console too — so that trouble during the
// run is seen, and a process's chatter (daprd's info lines, RabbitMQ's
// hundreds of start-up lines, a NATS node's refused routes while the others
// start) is not. Safe for concurrent use.
type LogFile struct {
	Path    string
	file    *os.File
	console io.Writer
	problem *regexp.Regexp
	armed   atomic.Bool

	mu      sync.Mutex
	partial []byte
}

// The lines that stand for a problem, by kind of process.
var (
	// BrokerProblem matches a broker line at an error level: RabbitMQ's
	// [error], NATS's [ERR] and [FTL], mosquitto's "Error: …", a Go
	// program's level=ERROR.
	BrokerProblem = regexp.MustCompile(`(?i)\[(error|err|ftl|fatal|critical)\]|\berror\b`)
	// DaprdProblem matches daprd's lines at its error and fatal levels
	// (its warnings in a local run are its notices: mTLS off, no
	// placement, no app channel on the publisher's sidecar).
	DaprdProblem = regexp.MustCompile(`\blevel=(error|fatal)\b`)
	// RedisProblem matches redis-server's lines at its warning level (#)
	// that name a warning, an error or a failure — not its start-up and
	// shutdown lines, which it logs at that level too — and the WARNING
	// lines StartRedis writes about where Redis comes from.
	RedisProblem = regexp.MustCompile(`(?i) # .*\b(warning|error|fail(ed|ure)?|fatal|can't|unable|denied)\b|^WARNING: `)
)

// OpenLogFile creates (or empties) the file at path for a process's lines;
// console gets those problem matches once armed.
func OpenLogFile(path string, console io.Writer, problem *regexp.Regexp) (*LogFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	return &LogFile{Path: path, file: f, console: console, problem: problem}, nil
}

// Arm starts passing the error-level lines to the console.
func (l *LogFile) Arm() { l.armed.Store(true) }

// Disarm stops it again, for the process's stop: what it says then (an
// Erlang logger complaining that its output went away) is its own
// business.
func (l *LogFile) Disarm() { l.armed.Store(false) }

// Write writes p to the file, and each complete error-level line of it to
// the console when armed.
func (l *LogFile) Write(p []byte) (int, error) {
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
		if l.armed.Load() && l.problem.Match(line) {
			if _, err := l.console.Write(line); err != nil {
				return len(p), err
			}
		}
		l.partial = l.partial[i+1:]
	}
}

// Close closes the file.
func (l *LogFile) Close() error { return l.file.Close() }
