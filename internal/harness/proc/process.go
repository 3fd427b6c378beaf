// Package proc is the process library: it starts and stops the real
// processes of the system — Redis and the other brokers, one daprd per app
// (found or built per version), and the apps — with their readiness, ports
// and output, for local runs (internal/harness/launcher), the integration
// tests and the benchmark. It is the only place that knows how.
package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process whose output is captured line by line, each
// line prefixed with its name, and which is stopped with its whole process
// group. Its methods are safe for concurrent use once Start has returned.
type Process struct {
	Name string   // prefix of every output line, e.g. "subscriber"
	Path string   // executable
	Args []string // arguments, without the program name
	Env  []string // extra environment, appended to the launcher's
	Dir  string   // working directory; "" for the launcher's
	// Out receives every output line, prefixed; nil discards them.
	Out io.Writer
	// OnLine, if set, sees every output line (unprefixed), in order, from
	// one goroutine at a time.
	OnLine func(line string)

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	lines   sync.WaitGroup

	mu   sync.Mutex
	tail []string // last output lines, for error messages
}

const tailLines = 20

// Start starts the process. The child gets its own process group (so a
// terminal's Ctrl-C reaches only the launcher, which stops children in
// order) and is killed by the kernel if the launcher dies first.
func (p *Process) Start() error {
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Our own pipes, not cmd.StdoutPipe: a daemon the child leaves behind
	// may keep the write ends open, and Done must not wait for it.
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s (%s): %w", p.Name, p.Path, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	p.lines.Add(2)
	var mu sync.Mutex // OnLine and Out see one line at a time
	go p.copyLines(outR, &mu)
	go p.copyLines(errR, &mu)
	go func() {
		p.waitErr = cmd.Wait()
		drained := make(chan struct{})
		go func() { p.lines.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(2 * time.Second): // a grandchild holds the pipes
			outR.Close()
			errR.Close()
			<-drained
		}
		close(p.done)
	}()
	return nil
}

func (p *Process) copyLines(r io.Reader, mu *sync.Mutex) {
	defer p.lines.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		mu.Lock()
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > tailLines {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		if p.Out != nil {
			fmt.Fprintf(p.Out, "[%s] %s\n", p.Name, line)
		}
		if p.OnLine != nil {
			p.OnLine(line)
		}
		mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // a line over 1 MiB: keep the child unblocked
}

// Restart starts the process again with the same settings, after it
// exited or was stopped (for instance killed by a fault test).
func (p *Process) Restart() error {
	if p.cmd != nil && !p.Exited() {
		p.Stop(StopGrace)
	}
	p.waitErr = nil
	return p.Start()
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited and its output is drained.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit 0); valid after Done.
func (p *Process) Err() error { return p.waitErr }

// Tail returns the last lines the process printed, for error messages.
func (p *Process) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait blocks until the process exits or ctx is done.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop sends SIGTERM to the process group, waits up to grace for it to
// exit, then sends SIGKILL. It returns once the process has exited and is
// safe to call more than once.
func (p *Process) Stop(grace time.Duration) {
	if p.cmd == nil || p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Signal sends sig to the process group, as a fault test does with SIGKILL
// or SIGSTOP.
func (p *Process) Signal(sig syscall.Signal) {
	if p.cmd != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// ExitError describes a process that exited while it was expected to run.
func (p *Process) ExitError() error {
	return fmt.Errorf("%s exited early (%w); its last output:\n%s", p.Name, p.waitErr, p.Tail())
}
