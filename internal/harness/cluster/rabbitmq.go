package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"dapr-pub-sub/internal/harness/hosts"
	"dapr-pub-sub/internal/harness/proc"
)

// RabbitMQ ports on every host.
const (
	AMQPPort       = 5672
	RabbitHTTPPort = 15672 // the management plugin's HTTP API
)

// rabbitBin is Debian's script under /usr/lib, not its /usr/sbin wrapper,
// which switches to the rabbitmq user in a new session, out of reach of
// our signals.
const rabbitBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// RabbitMQ is a three-node RabbitMQ cluster, one node per host, with a
// balancer on loopback in front of it: Dapr's RabbitMQ component takes one
// address, as it would take a Kubernetes Service's. Queues declared with
// x-queue-type quorum get a member on every node; a publish is confirmed
// once a majority of them stored it (Raft).
type RabbitMQ struct {
	Nodes    []*RabbitNode
	Balancer *Balancer
	user     string
	password string
	dir      string
}

// RabbitNode is one rabbitmq-server.
type RabbitNode struct {
	Host *hosts.Host
	Addr string // host:port for AMQP clients
	Name string // its Erlang node name, rabbit@<address>
	env  []string
	proc *proc.Process
	out  io.Writer
}

// StartRabbitMQ adds three hosts to n and starts a RabbitMQ node on each:
// the first alone, the other two joining it (peer discovery from the
// classic config), with the management plugin for the HTTP API the tests
// ask for queue leaders. It returns once all three run as one cluster,
// with user and password (an administrator) working on every node, and
// the balancer listening.
func StartRabbitMQ(ctx context.Context, n *hosts.Net, user, password string, out io.Writer) (rq *RabbitMQ, err error) {
	if _, err := os.Stat(rabbitBin); err != nil {
		return nil, errors.New("rabbitmq-server is not installed: apt-get install -y rabbitmq-server")
	}
	if user == "" || password == "" {
		return nil, errors.New("cluster: a RabbitMQ cluster needs a user and a password")
	}
	if out == nil {
		out = io.Discard
	}
	rq = &RabbitMQ{user: user, password: password}
	if rq.dir, err = os.MkdirTemp("", "dapr-pub-sub-rabbitmq-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			rq.Stop()
		}
	}()
	cookie := rand.Text() // the Erlang cookie the nodes share
	for _, name := range []string{"q1", "q2", "q3"} {
		h, err := n.Add(name)
		if err != nil {
			return rq, err
		}
		rq.Nodes = append(rq.Nodes, &RabbitNode{Host: h, Addr: net.JoinHostPort(h.Addr.String(), strconv.Itoa(AMQPPort)), Name: "rabbit@" + h.Addr.String(), out: out})
	}
	for i, node := range rq.Nodes {
		dir := filepath.Join(rq.dir, node.Host.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return rq, err
		}
		conf := fmt.Sprintf("loopback_users = none\ndefault_user = %s\ndefault_pass = %s\nlisteners.tcp.1 = %s\n"+
			"management.tcp.ip = %s\nmanagement.tcp.port = %d\n"+
			// RabbitMQ's advice for three nodes or more: a node in the
			// minority of a partition stops serving until it heals.
			// Erlang notices a partition after net_ticktime (60 s); a
			// quorum queue's Raft elects a new leader within seconds.
			"cluster_partition_handling = pause_minority\n"+
			// A delivery unacknowledged this long closes its channel and
			// goes back to the queue. Dapr's component can strand
			// deliveries on a consumer it lost track of (two subscriptions
			// re-subscribing at once on its one channel; see
			// docs/upstream-rabbitmq-shared-channel-rpc.md): this brings
			// them back in minutes, not RabbitMQ's default 30. Keep it above
			// the longest a delivery may take with its retries (~70 s here).
			"consumer_timeout = 90000\n",
			user, password, node.Addr, node.Host.Addr, RabbitHTTPPort)
		if i > 0 { // join the first
			conf += "cluster_formation.peer_discovery_backend = classic_config\ncluster_formation.classic_config.nodes.1 = " + rq.Nodes[0].Name + "\n"
		}
		for f, body := range map[string]string{
			"rabbitmq.conf":   conf,
			"enabled_plugins": "[rabbitmq_management].\n",
			".erlang.cookie":  cookie,
		} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o400); err != nil {
				return rq, err
			}
		}
		node.env = []string{
			"HOME=" + dir, "RABBITMQ_NODENAME=" + node.Name, "RABBITMQ_USE_LONGNAME=true",
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq"), "RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"), "RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"), "RABBITMQ_LOGS=-",
			"RABBITMQ_FEATURE_FLAGS_FILE=" + filepath.Join(dir, "feature_flags"), "RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins-expand"),
			"RABBITMQ_GENERATED_CONFIG_DIR=" + filepath.Join(dir, "config"), "RABBITMQ_SCHEMA_DIR=" + filepath.Join(dir, "schema"),
			"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"), "RABBITMQ_QUORUM_DIR=" + filepath.Join(dir, "quorum"),
			"ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump"),
		}
		if err := node.Start(); err != nil {
			return rq, err
		}
		if i == 0 { // the others join it: it must be up first
			if err := rq.waitNodes(ctx, rq.Nodes[:1]); err != nil {
				return rq, err
			}
		}
	}
	if err := rq.waitNodes(ctx, rq.Nodes); err != nil {
		return rq, err
	}
	addrs := make([]string, len(rq.Nodes))
	for i, node := range rq.Nodes {
		addrs[i] = node.Addr
	}
	if rq.Balancer, err = NewBalancer(addrs); err != nil {
		return rq, err
	}
	return rq, nil
}

// URL is the AMQP URL through the balancer, as Dapr's RabbitMQ component
// takes it in connectionString.
func (rq *RabbitMQ) URL() string {
	return "amqp://" + url.UserPassword(rq.user, rq.password).String() + "@" + rq.Balancer.Addr()
}

// Start starts the node's rabbitmq-server (again, after Kill: it rejoins
// the cluster from its data).
func (r *RabbitNode) Start() error {
	argv := r.Host.Argv(rabbitBin)
	r.proc = &proc.Process{Name: "rabbit-" + r.Host.Name, Path: argv[0], Args: argv[1:], Out: r.out, Env: r.env}
	return r.proc.Start()
}

// Kill kills the node with SIGKILL (no shutdown) and waits for it to go;
// its epmd, a daemon, stays, as it would on a host whose broker crashed.
func (r *RabbitNode) Kill() {
	if r.proc != nil && !r.proc.Exited() {
		r.proc.Signal(syscall.SIGKILL)
		<-r.proc.Done()
	}
}

// Restart stops the node gracefully (SIGTERM) and starts it again.
func (r *RabbitNode) Restart() error {
	r.proc.Stop(time.Minute)
	return r.Start()
}

// rabbitNodeJSON is the part of GET /api/nodes the fixture reads.
type rabbitNodeJSON struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
}

// api GETs path from node's management API into v.
func (rq *RabbitMQ) api(ctx context.Context, node *RabbitNode, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(node.Host.Addr.String(), strconv.Itoa(RabbitHTTPPort))+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(rq.user, rq.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s%s: %s: %s", node.Name, path, resp.Status, b)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(v)
}

// waitNodes waits until each of nodes answers its management API and sees
// every one of nodes running in its cluster.
func (rq *RabbitMQ) waitNodes(ctx context.Context, nodes []*RabbitNode) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		if last = rq.clusterOf(ctx, nodes); last == nil {
			return nil
		}
		for _, n := range nodes {
			if n.proc.Exited() {
				return fmt.Errorf("rabbitmq %s exited: %w", n.Name, n.proc.Err())
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the RabbitMQ cluster did not come up: %w", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (rq *RabbitMQ) clusterOf(ctx context.Context, nodes []*RabbitNode) error {
	for _, n := range nodes {
		var got []rabbitNodeJSON
		if err := rq.api(ctx, n, "/api/nodes", &got); err != nil {
			return err
		}
		running := map[string]bool{}
		for _, g := range got {
			running[g.Name] = g.Running
		}
		for _, want := range nodes {
			if !running[want.Name] {
				return fmt.Errorf("%s does not see %s running", n.Name, want.Name)
			}
		}
	}
	return nil
}

// WaitHealthy waits until all three nodes run as one cluster again.
func (rq *RabbitMQ) WaitHealthy(ctx context.Context) error { return rq.waitNodes(ctx, rq.Nodes) }

// rabbitQueueJSON is the part of GET /api/queues/%2F/<name> the fixture
// reads.
type rabbitQueueJSON struct {
	Type     string   `json:"type"`
	Leader   string   `json:"leader"`
	Online   []string `json:"online"`
	Messages int      `json:"messages"`
	Unacked  int      `json:"messages_unacknowledged"`
}

// queue asks the running nodes, in turn, about queue.
func (rq *RabbitMQ) queue(ctx context.Context, queue string) (rabbitQueueJSON, error) {
	var errs []error
	for _, n := range rq.Nodes {
		if n.proc.Exited() {
			continue
		}
		var q rabbitQueueJSON
		err := rq.api(ctx, n, "/api/queues/%2F/"+url.PathEscape(queue), &q)
		if err == nil {
			return q, nil
		}
		errs = append(errs, err)
	}
	return rabbitQueueJSON{}, fmt.Errorf("no node answers about queue %s: %w", queue, errors.Join(errs...))
}

// QueueLeader is the node leading the quorum queue's Raft group.
func (rq *RabbitMQ) QueueLeader(ctx context.Context, queue string) (*RabbitNode, error) {
	q, err := rq.queue(ctx, queue)
	if err != nil {
		return nil, err
	}
	if q.Type != "quorum" {
		return nil, fmt.Errorf("queue %s is %q, not a quorum queue", queue, q.Type)
	}
	for _, n := range rq.Nodes {
		if n.Name == q.Leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("queue %s: leader %q is no node of ours", queue, q.Leader)
}

// QueueIdle reports whether queue holds nothing: no message ready, none
// delivered and unacknowledged, and all its members online.
func (rq *RabbitMQ) QueueIdle(ctx context.Context, queue string) (bool, error) {
	q, err := rq.queue(ctx, queue)
	if err != nil {
		return false, err
	}
	return q.Messages == 0 && q.Unacked == 0 && len(q.Online) == len(rq.Nodes), nil
}

// Stop stops the balancer, every node and its epmd, and removes the data.
func (rq *RabbitMQ) Stop() {
	if rq.Balancer != nil {
		rq.Balancer.Close()
	}
	for _, n := range rq.Nodes {
		if n.proc != nil {
			n.proc.Stop(proc.StopGrace)
		}
		_ = n.Host.Command("epmd", "-kill").Run() // best effort: epmd is a daemon, not our child
	}
	if rq.dir != "" {
		os.RemoveAll(rq.dir)
	}
}
