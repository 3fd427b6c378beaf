package proc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pollInterval is how often readiness is polled.
const pollInterval = 50 * time.Millisecond

// WaitHTTP polls url until it answers want, p exits, or ctx ends; the error
// says which, with p's last output. p may be nil.
func WaitHTTP(ctx context.Context, url string, want int, p *Process) error {
	client := &http.Client{Timeout: time.Second}
	var last string // what the url answered last time
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = "status " + strconv.Itoa(resp.StatusCode)
		} else {
			last = err.Error()
		}
		if err := pause(ctx, p); err != nil {
			return fmt.Errorf("waiting for %s to answer %d (last: %s): %w", url, want, last, err)
		}
	}
}

// WaitTCP polls addr until it accepts a connection, p exits, or ctx ends.
func WaitTCP(ctx context.Context, addr string, p *Process) error {
	return waitDial(ctx, "tcp", addr, p)
}

// WaitUnix polls the Unix socket path as WaitTCP polls a TCP address.
func WaitUnix(ctx context.Context, path string, p *Process) error {
	return waitDial(ctx, "unix", path, p)
}

func waitDial(ctx context.Context, network, addr string, p *Process) error {
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if err := pause(ctx, p); err != nil {
			return fmt.Errorf("waiting for %s to accept connections: %w", addr, err)
		}
	}
}

// pause waits one poll interval; it fails if ctx ends or p has exited.
func pause(ctx context.Context, p *Process) error {
	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-exited:
		return p.ExitError()
	case <-time.After(pollInterval):
		return nil
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago, for processes about to be started. It holds them all until it
// has all of them, so it never returns the same port twice.
//
// The ports come from below the kernel's ephemeral range, which outgoing
// connections draw their local ports from: a port picked there (as
// listening on :0 does) can be taken by any client socket before the child
// binds it. Each port is also claimed for a minute in a file under the temp
// folder, so that test binaries running side by side do not hand out the
// same one.
func FreePorts(n int) ([]int, error) {
	lo, hi := portRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free port found in %d–%d after %d tries", lo, hi, tries)
		}
		port := lo + rand.IntN(hi-lo)
		if slices.Contains(ports, port) || !claimPort(port) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, port)
	}
	return ports, nil
}

// portRange is where FreePorts picks: from 10000 up to the start of the
// ephemeral range (ip_local_port_range; 32768 if unreadable).
func portRange() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 10000+1000 {
				hi = v
			}
		}
	}
	return 10000, hi
}

// claimPort records that this process is about to use port, unless another
// did so less than a minute ago.
func claimPort(port int) bool {
	dir := filepath.Join(os.TempDir(), "dapr-pub-sub-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return true // no claims possible: rely on the listen check
	}
	file := filepath.Join(dir, strconv.Itoa(port))
	if st, err := os.Stat(file); err == nil && time.Since(st.ModTime()) < time.Minute {
		return false
	}
	return os.WriteFile(file, nil, 0o644) == nil
}

// CheckPortFree returns a clear error if port is already taken on loopback.
func CheckPortFree(port int, what, fix string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d (%s) is already in use: find the owner with `ss -ltnp 'sport = :%d'` and stop it, or %s", port, what, port, fix)
	}
	return l.Close()
}
