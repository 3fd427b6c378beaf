package proc

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sync"
)

// KnownLine is a log line of a process we run that does not stand for a
// problem of this system: a defect of Dapr's that we found, reported and
// work around, or a notice daprd prints whatever the settings. It is shown
// once, explained, and then only counted.
type KnownLine struct {
	Name   string         // short name, for the count at the end
	Match  *regexp.Regexp // matches the line, in daprd's text or JSON format
	Why    string         // what it is and why it is harmless, in one sentence
	Report string         // where docs/ explains it
}

// IdleReadTimeout is daprd's Redis pub/sub component failing every read
// of an idle stream: our readTimeout workaround (components/pubsub.yaml)
// makes the read's BLOCK and its client deadline the same value, and the
// client's deadline passes before Redis answers "nothing new". No setting
// of the component avoids it (docs/upstream-redis-pubsub-blocking-read.md,
// "The workaround's own defect"). A read that fails for another reason
// (refused, reset, no such group) does not match, and a Redis that stops
// answering also shows, unfolded, "error retrieving pending Redis messages"
// every redeliverInterval.
var IdleReadTimeout = KnownLine{
	Name:   "idle-stream read timeout",
	Match:  regexp.MustCompile(`redis streams: error reading from stream \S+: read tcp \S+: i/o timeout`),
	Why:    `an idle stream's 2 s read timed out as Redis answered "nothing new" (a Dapr defect, harmless: nothing is lost; the component reads again)`,
	Report: "docs/upstream-redis-pubsub-blocking-read.md",
}

// knownLinesDoc is where docs/ lists the known lines and how to filter
// them on Kubernetes.
const knownLinesDoc = "docs/operations.md#known-dapr-log-lines-and-how-to-filter-them"

// ActorsNoGrace is daprd 1.18's actor runtime warning at every start that
// its shutdown has no time limit: pkg/actors/actors.go 276 starts its
// closer with a nil grace period, hard-coded. No setting changes it (with
// no placement address daprd warns that actors are disabled instead).
var ActorsNoGrace = KnownLine{
	Name:   "actor runtime shutdown notice",
	Match:  regexp.MustCompile(`Graceful shutdown timeout is infinite, will wait indefinitely to shutdown`),
	Why:    "daprd's actor runtime always starts without a shutdown limit (hard-coded in Dapr 1.18); this app hosts no actors, and daprd's own graceful shutdown still applies",
	Report: knownLinesDoc,
}

// NoScheduler is daprd's warning that no Dapr scheduler is configured:
// make run starts none, and the Kubernetes fixture installs none. The jobs
// and workflow APIs are then off; pub/sub does not use them.
var NoScheduler = KnownLine{
	Name:   "no scheduler notice",
	Match:  regexp.MustCompile(`No scheduler host addresses provided\. Scheduler disabled`),
	Why:    "no Dapr scheduler runs here, so the jobs and workflow APIs are off; pub/sub does not use them",
	Report: knownLinesDoc,
}

// NoRollback is the Redis state store's warning at its first transaction:
// the outbox mode's order store runs transactions. It is true (MULTI/EXEC
// applies what it can), and is why the outbox sends no ETags
// (docs/upstream-outbox.md); it is not a problem of this system.
var NoRollback = KnownLine{
	Name:   "Redis transaction notice",
	Match:  regexp.MustCompile(`Redis does not support transaction rollbacks and should not be used in production as an actor state store\.`),
	Why:    "the Redis state store's notice at its first transaction: no rollbacks, which the outbox mode's transactions (no ETags, one order each) do not need; this app hosts no actors",
	Report: knownLinesDoc,
}

// KnownDaprLines are the known lines of daprd, folded by `make run` (at its
// default --log-level error only the first shows; the others at info).
var KnownDaprLines = []KnownLine{IdleReadTimeout, ActorsNoGrace, NoScheduler, NoRollback}

// Folder is an io.Writer of whole lines (a process's prefixed output, as
// Process writes it) that passes every line on, except those a KnownLine
// matches: the first of each kind is replaced by one note that says what it
// is and where it is reported, and the rest are only counted. It never
// folds a line no KnownLine matches. Safe for concurrent use.
type Folder struct {
	out   io.Writer
	known []KnownLine

	mu      sync.Mutex
	partial []byte
	counts  []int
}

// NewFolder returns a Folder writing to out.
func NewFolder(out io.Writer, known []KnownLine) *Folder {
	return &Folder{out: out, known: known, counts: make([]int, len(known))}
}

// Write passes p's complete lines on; a trailing partial line waits for
// its end.
func (f *Folder) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partial = append(f.partial, p...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := f.partial[:i+1]
		if err := f.line(line); err != nil {
			return len(p), err
		}
		f.partial = f.partial[i+1:]
	}
}

func (f *Folder) line(line []byte) error {
	for i, k := range f.known {
		if !k.Match.Match(line) {
			continue
		}
		f.counts[i]++
		if f.counts[i] > 1 {
			return nil
		}
		prefix := ""
		if bytes.HasPrefix(line, []byte("[")) {
			if j := bytes.Index(line, []byte("] ")); j > 0 {
				prefix = string(line[:j+2])
			}
		}
		_, err := fmt.Fprintf(f.out, "%snote: %s; see %s. Lines like it are counted, not shown.\n", prefix, k.Why, k.Report)
		return err
	}
	_, err := f.out.Write(line)
	return err
}

// Counts returns how many lines of each known kind were folded, by name;
// kinds never seen are left out.
func (f *Folder) Counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := map[string]int{}
	for i, k := range f.known {
		if f.counts[i] > 0 {
			c[k.Name] = f.counts[i]
		}
	}
	return c
}

// Summary is one line for the end of a run: what was folded, with counts,
// or "" if nothing was.
func (f *Folder) Summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b bytes.Buffer
	for i, k := range f.known {
		if f.counts[i] == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d × %s (%s)", f.counts[i], k.Name, k.Report)
	}
	if b.Len() == 0 {
		return ""
	}
	return "Known daprd lines folded: " + b.String()
}
