package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"dapr-pub-sub/internal/harness/hosts"
	"dapr-pub-sub/internal/harness/proc"
)

// NATS ports on every host.
const (
	NATSPort        = 4222
	NATSClusterPort = 6222
	NATSMonitorPort = 8222
)

// JetStream is a three-node NATS cluster with JetStream on, one node per
// host, and the topics' streams with three replicas: a message is stored
// once a majority of the nodes has it (JetStream's RAFT).
type JetStream struct {
	Nodes []*NATSNode
	dir   string
}

// NATSNode is one nats-server.
type NATSNode struct {
	Host *hosts.Host
	Addr string // host:port for clients
	conf string
	proc *proc.Process
}

// StartJetStream adds three hosts to n, starts a clustered nats-server with
// JetStream on each, waits for every node to be healthy and creates a
// stream per subject (named after it) with three replicas.
func StartJetStream(ctx context.Context, n *hosts.Net, subjects []string, out io.Writer) (js *JetStream, err error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		return nil, errors.New("nats-server is not installed: apt-get install -y nats-server")
	}
	if out == nil {
		out = io.Discard
	}
	js = &JetStream{}
	if js.dir, err = os.MkdirTemp("", "dapr-pub-sub-jetstream-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			js.Stop()
		}
	}()
	var hs []*hosts.Host
	for _, name := range []string{"n1", "n2", "n3"} {
		h, err := n.Add(name)
		if err != nil {
			return js, err
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		var routes []string
		for _, o := range hs {
			if o != h {
				routes = append(routes, fmt.Sprintf("%q", "nats://"+net.JoinHostPort(o.Addr.String(), strconv.Itoa(NATSClusterPort))))
			}
		}
		dir := filepath.Join(js.dir, h.Name)
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\nhttp: %q\njetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n"+
			"cluster {\n  name: orders\n  listen: %q\n  routes: [%s]\n}\n",
			h.Name, net.JoinHostPort(h.Addr.String(), strconv.Itoa(NATSPort)), net.JoinHostPort(h.Addr.String(), strconv.Itoa(NATSMonitorPort)),
			dir, net.JoinHostPort(h.Addr.String(), strconv.Itoa(NATSClusterPort)), strings.Join(routes, ", "))
		node := &NATSNode{Host: h, Addr: net.JoinHostPort(h.Addr.String(), strconv.Itoa(NATSPort)), conf: filepath.Join(js.dir, h.Name+".conf")}
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			return js, err
		}
		argv := h.Argv(bin, "-c", node.conf)
		node.proc = &proc.Process{Name: "nats-" + h.Name, Path: argv[0], Args: argv[1:], Out: out}
		if err := node.proc.Start(); err != nil {
			return js, err
		}
		js.Nodes = append(js.Nodes, node)
	}
	if err := js.WaitHealthy(ctx); err != nil {
		return js, err
	}
	return js, js.createStreams(ctx, subjects)
}

// URLs are the nodes' client URLs, comma-separated, as Dapr's JetStream
// component takes them in natsURL.
func (js *JetStream) URLs() string {
	urls := make([]string, len(js.Nodes))
	for i, n := range js.Nodes {
		urls[i] = "nats://" + n.Addr
	}
	return strings.Join(urls, ",")
}

// WaitHealthy waits until every running node's /healthz answers 200 (its
// JetStream is up and current).
func (js *JetStream) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		var last error
		for _, n := range js.Nodes {
			if n.proc.Exited() {
				continue
			}
			url := "http://" + net.JoinHostPort(n.Host.Addr.String(), strconv.Itoa(NATSMonitorPort)) + "/healthz"
			resp, err := client.Get(url)
			if err != nil {
				last = err
				break
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				last = fmt.Errorf("%s: %s", url, resp.Status)
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jetstream cluster not healthy: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// createStreams makes one file-backed stream per subject, three replicas,
// retried until the cluster has elected its meta leader. Each attempt has
// its own short deadline: while the meta group has no leader yet (and has
// not lost one), nats-server answers a create request from no node at all
// (jetstream_api.go: "Make sure we are meta leader" returns silently), so a
// request bounded only by the whole minute waits out the minute — the CI
// failure of 2026-12-06, "create stream orders with 3 replicas: context
// deadline exceeded".
func (js *JetStream) createStreams(ctx context.Context, subjects []string) error {
	nc, jsc, err := js.client()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, s := range subjects {
		for {
			attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
			_, err := jsc.AddStream(&nats.StreamConfig{Name: s, Subjects: []string{s}, Replicas: 3, Storage: nats.FileStorage}, nats.Context(attempt))
			cancelAttempt()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("create stream %s with 3 replicas: %w", s, err)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// client is a new connection to the cluster and its JetStream context;
// the caller closes nc. New each time: a long-lived one could still be
// attached to a node a test has just cut off.
func (js *JetStream) client() (*nats.Conn, nats.JetStreamContext, error) {
	nc, err := nats.Connect(js.URLs(), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, nil, err
	}
	jsc, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, jsc, nil
}

// StreamLeader is the node that leads the stream now.
func (js *JetStream) StreamLeader(ctx context.Context, stream string) (*NATSNode, error) {
	nc, jsc, err := js.client()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	info, err := jsc.StreamInfo(stream, nats.Context(ctx))
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil {
		return nil, fmt.Errorf("stream %s has no cluster info", stream)
	}
	for _, n := range js.Nodes {
		if n.Host.Name == info.Cluster.Leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("stream %s is led by %q, no node of ours", stream, info.Cluster.Leader)
}

// ConsumerIdle reports whether durable consumer durable of stream has
// nothing left: no message undelivered, none delivered and unacknowledged.
func (js *JetStream) ConsumerIdle(ctx context.Context, stream, durable string) (bool, error) {
	nc, jsc, err := js.client()
	if err != nil {
		return false, err
	}
	defer nc.Close()
	info, err := jsc.ConsumerInfo(stream, durable, nats.Context(ctx))
	if err != nil {
		return false, err
	}
	return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0, nil
}

// Kill kills the node with SIGKILL and waits for it to go.
func (n *NATSNode) Kill() {
	if n.proc != nil && !n.proc.Exited() {
		n.proc.Signal(syscall.SIGKILL)
		<-n.proc.Done()
	}
}

// Restart stops the node gracefully (SIGTERM) and starts it again; it
// catches up from the others.
func (n *NATSNode) Restart() error { return n.proc.Restart() }

// Start starts a killed node again.
func (n *NATSNode) Start() error { return n.proc.Restart() }

// Stop stops every node and removes the data.
func (js *JetStream) Stop() {
	for _, n := range js.Nodes {
		n.proc.Stop(proc.StopGrace)
	}
	if js.dir != "" {
		os.RemoveAll(js.dir)
	}
}
