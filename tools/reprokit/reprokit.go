// Package reprokit is what the upstream reproductions in tools/repro-*
// share: finding daprd, free loopback ports, redis-server and daprd
// processes, polling. It uses no code of this project, so a reproduction
// and this file are all an upstream maintainer needs.
package reprokit

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Main runs a reproduction and exits 1 with its error: the defect
// reproduced, or the reproduction could not run.
func Main(run func() error) {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "repro:", err)
		os.Exit(1)
	}
}

// FindDaprd is DAPRD, else daprd on PATH, else the newest build `make
// daprd` cached under ~/.cache/dapr-pub-sub.
func FindDaprd() (string, error) {
	if p := os.Getenv("DAPRD"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("daprd"); err == nil {
		return p, nil
	}
	if dir, err := os.UserCacheDir(); err == nil {
		matches, _ := filepath.Glob(filepath.Join(dir, "dapr-pub-sub", "daprd-*", "daprd"))
		sort.Strings(matches)
		if len(matches) > 0 {
			return matches[len(matches)-1], nil
		}
	}
	return "", errors.New("no daprd: set DAPRD=/path/to/daprd, put daprd on PATH, or run `make daprd`")
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// RedisCLI runs redis-cli against port and returns its output.
func RedisCLI(port int) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).Output()
		return string(out), err
	}
}

// StartRedis starts redis-server on 127.0.0.1:port, without persistence,
// its files in dir, with extra arguments ("--replicaof", …), and waits
// until it answers PING. Stop it with Stop.
func StartRedis(dir string, port int, extra ...string) (*exec.Cmd, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--dbfilename", "dump-" + strconv.Itoa(port) + ".rdb"}, extra...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server (apt-get install redis-server): %w", err)
	}
	if err := WaitFor(10*time.Second, func() bool { out, _ := RedisCLI(port)("PING"); return out == "PONG\n" }); err != nil {
		Stop(cmd)
		return nil, fmt.Errorf("redis-server on port %d did not answer: %w", port, err)
	}
	return cmd, nil
}

// RedisStateStore writes dir/components/statestore.yaml, Dapr's
// state.redis on 127.0.0.1:port, and returns the components folder.
func RedisStateStore(dir string, port int) (string, error) {
	components := filepath.Join(dir, "components")
	if err := os.MkdirAll(components, 0o755); err != nil {
		return "", err
	}
	return components, os.WriteFile(filepath.Join(components, "statestore.yaml"), fmt.Appendf(nil, `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - name: redisHost
      value: 127.0.0.1:%d
`, port), 0o644)
}

// Sidecar is a daprd started by StartSidecar.
type Sidecar struct {
	Cmd     *exec.Cmd
	URL     string // its HTTP API: http://127.0.0.1:<port>
	Version string // what daprd --version printed
	Log     string // the file of its output
}

// StartSidecar starts daprd (the binary) as app id with the resources
// folder and extra arguments (--app-port, …), its APIs on free ports of
// 127.0.0.1, metrics off, its output in dir/daprd.log, and waits until its
// HTTP API is healthy. Stop it with Stop(s.Cmd).
func StartSidecar(daprd, dir, appID, resources string, extra ...string) (*Sidecar, error) {
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	version, err := exec.Command(daprd, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", daprd, err)
	}
	s := &Sidecar{URL: "http://127.0.0.1:" + strconv.Itoa(ports[0]), Version: strings.TrimSpace(string(version)), Log: filepath.Join(dir, "daprd.log")}
	out, err := os.Create(s.Log)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	args := append([]string{"--app-id", appID, "--dapr-http-port", strconv.Itoa(ports[0]), "--dapr-grpc-port", strconv.Itoa(ports[1]),
		"--dapr-internal-grpc-port", strconv.Itoa(ports[2]), "--metrics-port", "0", "--enable-metrics=false",
		"--resources-path", resources, "--dapr-listen-addresses", "127.0.0.1"}, extra...)
	s.Cmd = exec.Command(daprd, args...)
	s.Cmd.Stdout, s.Cmd.Stderr = out, out
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("daprd: %w", err)
	}
	if err := WaitFor(60*time.Second, func() bool {
		resp, err := http.Get(s.URL + "/v1.0/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	}); err != nil {
		Stop(s.Cmd)
		return nil, fmt.Errorf("daprd did not become ready (log: %s): %w", s.Log, err)
	}
	return s, nil
}

// Stop kills a process started here and reaps it.
func Stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// WaitFor polls cond every 100 ms until it holds, or fails after timeout.
func WaitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
