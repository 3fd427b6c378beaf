package launcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
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
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
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
		return p.exitError()
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
// moment ago. It holds them all until it has all of them, so that, unlike
// n calls of FreePort, it never returns the same port twice.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// CheckPortFree returns a clear error if port is already taken on loopback.
func CheckPortFree(port int, what, fix string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d (%s) is already in use: find the owner with `ss -ltnp 'sport = :%d'` and stop it, or %s", port, what, port, fix)
	}
	return l.Close()
}
