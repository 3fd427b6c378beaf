package proc

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// App ids, as in the original example.
const (
	SubscriberID = "subscriber"
	PublisherID  = "publisher"
)

// MaxBodySize is daprd's --max-body-size: the largest request its APIs
// take, a publish included. Larger publishes are refused with an error and
// nothing is stored.
const MaxBodySize = "1Mi"

// readyTimeout bounds every wait for a process to become ready.
const readyTimeout = 60 * time.Second

// StopGrace is how long a process gets between SIGTERM and SIGKILL. It is
// above daprd's default graceful shutdown of 5 s.
const StopGrace = 10 * time.Second

// BuildApps builds cmd/publisher, cmd/subscriber, cmd/deadletters,
// cmd/retention and cmd/recordstore of the repository at root into dir.
func BuildApps(ctx context.Context, root, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/publisher", "./cmd/subscriber", "./cmd/deadletters", "./cmd/retention", "./cmd/recordstore")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the apps: %w\n%s", err, out)
	}
	return nil
}

// Sidecar describes one daprd to start.
type Sidecar struct {
	Name     string // log prefix; default "daprd-<AppID>"
	Secrets  Secrets
	Config   string // daprd --config file; "" for none
	AppID    string
	AppPort  int    // 0: no app channel (a publisher needs none)
	AppProto string // the app channel's --app-protocol: "http" (default) or "grpc"
	// NoAppHealthCheck leaves daprd's app health check off.
	NoAppHealthCheck bool
	HTTPPort         int // 0: a free port
	GRPCPort         int // 0: a free port
	Resources        string
	LogLevel         string // daprd --log-level; default info
	Extra            []string
	// Env is more environment for daprd (NAME=value), e.g. GOGC.
	Env []string
}

// RunningSidecar is a running daprd.
type RunningSidecar struct {
	*Process
	HTTPPort, GRPCPort int
	APIToken           string // what its API requires in the dapr-api-token header
}

// HTTPURL is the sidecar's HTTP API base, e.g. http://127.0.0.1:3500.
func (s *RunningSidecar) HTTPURL() string { return "http://127.0.0.1:" + strconv.Itoa(s.HTTPPort) }

// GRPCAddr is the sidecar's gRPC API address.
func (s *RunningSidecar) GRPCAddr() string { return "127.0.0.1:" + strconv.Itoa(s.GRPCPort) }

// StartSidecar starts daprd for sc and waits until GET /v1.0/healthz
// answers 204, which daprd does once its components are loaded and, with
// an app port, the app answers and its subscriptions are read.
func StartSidecar(ctx context.Context, d Daprd, sc Sidecar, out io.Writer) (*RunningSidecar, error) {
	var internal, metrics int
	free, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	for i, p := range []*int{&sc.HTTPPort, &sc.GRPCPort, &internal, &metrics} {
		if *p == 0 {
			*p = free[i]
		}
	}
	if sc.LogLevel == "" {
		sc.LogLevel = "info"
	}
	if strings.Contains(sc.Resources, ",") {
		return nil, fmt.Errorf("resources path %q contains a comma, which daprd's --resources-path takes as a separator: use another folder", sc.Resources)
	}
	args := []string{
		"--app-id", sc.AppID,
		"--dapr-http-port", strconv.Itoa(sc.HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(sc.GRPCPort),
		"--dapr-internal-grpc-port", strconv.Itoa(internal),
		"--metrics-port", strconv.Itoa(metrics),
		// Every port on loopback: the API, the internal gRPC port, metrics.
		"--dapr-listen-addresses", "127.0.0.1",
		"--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--metrics-listen-address", "127.0.0.1",
		"--max-body-size", MaxBodySize,
		"--resources-path", sc.Resources,
		"--log-level", sc.LogLevel,
		// In-flight deliveries get this long after SIGTERM; the subscriber
		// bounds its own shutdown by the same 5 s.
		"--dapr-graceful-shutdown-seconds", "5",
	}
	if sc.AppPort != 0 {
		if sc.AppProto == "" {
			sc.AppProto = "http"
		}
		args = append(args, "--app-port", strconv.Itoa(sc.AppPort), "--app-protocol", sc.AppProto, "--app-channel-address", "127.0.0.1")
		if !sc.NoAppHealthCheck {
			// daprd probes the app every second (GET /healthz on http,
			// the HealthCheck RPC on grpc) and stops delivering after 3
			// failures in a row (restarting when it answers again),
			// instead of burning retries on a dead app.
			args = append(args, "--enable-app-health-check",
				"--app-health-probe-interval", "1", "--app-health-probe-timeout", "500", "--app-health-threshold", "3")
			if sc.AppProto == "http" {
				args = append(args, "--app-health-check-path", "/healthz")
			}
		}
	}
	if sc.Config != "" {
		args = append(args, "--config", sc.Config)
	}
	args = append(args, sc.Extra...)
	if sc.Name == "" {
		sc.Name = "daprd-" + sc.AppID
	}
	p := &Process{Name: sc.Name, Path: d.Path, Args: args, Out: out, Env: append(sc.Secrets.sidecarEnv(sc.AppPort != 0), sc.Env...)}
	if err := p.Start(); err != nil {
		return nil, err
	}
	s := &RunningSidecar{Process: p, HTTPPort: sc.HTTPPort, GRPCPort: sc.GRPCPort, APIToken: sc.Secrets.APIToken}
	if err := s.WaitReady(ctx); err != nil {
		p.Stop(StopGrace)
		return nil, err
	}
	return s, nil
}

// WaitReady polls until the sidecar answers GET /v1.0/healthz with 204.
func (s *RunningSidecar) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := WaitHTTP(ctx, s.HTTPURL()+"/v1.0/healthz", 204, s.Process); err != nil {
		return fmt.Errorf("%s did not become ready: %w", s.Name, err)
	}
	return nil
}

// SubscriberApp describes a subscriber process to start.
type SubscriberApp struct {
	Name   string // log prefix; default SubscriberID
	BinDir string // where the subscriber binary is
	// Command, if set, runs instead of the subscriber binary: the path
	// and its arguments (the benchmark's bare app). It gets the same
	// environment and must serve /healthz on Port.
	Command []string
	Port    int          // its listen port, the sidecar's --app-port
	Env     []string     // its whole configuration: subscriber.Config.Env()
	Out     io.Writer    // its output, each line prefixed with Name
	OnLine  func(string) // sees every output line
}

// StartSubscriberApp starts the subscriber binary and waits until its
// /healthz answers 200. The app does not need its sidecar to be up yet.
func StartSubscriberApp(ctx context.Context, a SubscriberApp) (*Process, error) {
	if a.Name == "" {
		a.Name = SubscriberID
	}
	p := &Process{Name: a.Name, Path: filepath.Join(a.BinDir, SubscriberID), Out: a.Out, OnLine: a.OnLine, Env: a.Env}
	if len(a.Command) > 0 {
		p.Path, p.Args = a.Command[0], a.Command[1:]
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	if err := WaitApp(ctx, p, a.Port); err != nil {
		p.Stop(StopGrace)
		return nil, err
	}
	return p, nil
}

// WaitApp waits until the app process p answers 200 on /healthz at port
// (it serves).
func WaitApp(ctx context.Context, p *Process, port int) error {
	return waitPath(ctx, p, port, "/healthz")
}

// WaitAppReady waits until the app process p answers 200 on /readyz at
// port (it is subscribed and its sidecar answers).
func WaitAppReady(ctx context.Context, p *Process, port int) error {
	return waitPath(ctx, p, port, "/readyz")
}

func waitPath(ctx context.Context, p *Process, port int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := WaitHTTP(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+path, 200, p); err != nil {
		return fmt.Errorf("%s did not become ready (%s): %w", p.Name, path, err)
	}
	return nil
}
