package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/subscriber"
)

// profiler takes CPU profiles of a Dapr scenario's processes during a
// fixed-rate run (cmd/bench -profile DIR): both daprd (--enable-profiling)
// and the subscriber (PPROF_ADDRESS), each over the run's schedule, into
// DIR/<run>-<process>.pprof. Read them with `go tool pprof -top FILE`.
type profiler struct {
	dir   string
	ports map[string]int // process → its pprof port
}

// newProfiler picks a port for each process; nil when dir is "".
func newProfiler(dir string) (*profiler, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := proc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	return &profiler{dir: dir, ports: map[string]int{"daprd-publisher": ports[0], "daprd-subscriber": ports[1], "subscriber": ports[2]}}, nil
}

// daprArgs are the flags that make a daprd serve its profiles.
func (pr *profiler) daprArgs(process string) []string {
	if pr == nil {
		return nil
	}
	return []string{"--enable-profiling", "--profile-port", strconv.Itoa(pr.ports[process])}
}

// appConfig makes the subscriber serve its profiles.
func (pr *profiler) appConfig(c *subscriber.Config) {
	if pr != nil {
		c.PprofAddress = "127.0.0.1:" + strconv.Itoa(pr.ports["subscriber"])
	}
}

// start profiles every process for d, in the background; the returned
// wait blocks until the profiles are written and returns the first error.
func (pr *profiler) start(ctx context.Context, run string, d time.Duration) (wait func() error) {
	if pr == nil || d < time.Second {
		return func() error { return nil }
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(pr.ports))
	for process, port := range pr.ports {
		wg.Go(func() {
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(d.Seconds()))
			if err := fetchTo(ctx, url, filepath.Join(pr.dir, run+"-"+process+".pprof")); err != nil {
				errs <- fmt.Errorf("profile %s: %w", process, err)
			}
		})
	}
	return func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// fetchTo writes what url answers to file.
func fetchTo(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
