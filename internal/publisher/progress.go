package publisher

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// longRun is the count from which a run of generated orders gets a progress
// bar; a file always does.
const longRun = 100

// wantProgress reports whether a run of total orders (Forever for no end)
// shows a progress bar: only on a terminal, and only for a long run.
func wantProgress(terminal bool, cfg Config, total int) bool {
	return terminal && (cfg.File != "" || total == Forever || total >= longRun)
}

// isTerminal reports whether w is a file descriptor open on a terminal
// (not merely a character device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress is a progress bar on a terminal; a nil *progress does nothing.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress draws a bar of total orders on w, a spinner for Forever.
func newProgress(w io.Writer, total int) *progress {
	return &progress{bar: progressbar.NewOptions64(int64(total),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("publishing"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("orders"),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(total != Forever),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

// add moves the bar n orders on.
func (p *progress) add(n int) { _ = p.bar.Add(n) }

// done ends the bar where it is, on a line of its own, so that the summary
// that follows does not overwrite it.
func (p *progress) done() {
	if p == nil || p.bar.IsFinished() {
		return
	}
	_ = p.bar.Exit()
}
