// Package cluster runs clustered brokers on test hosts of our own
// (internal/hosts), one node per host, so that a test can kill a node or
// cut it off the network as a real cluster loses a host.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/harness/hosts"
	"dapr-pub-sub/internal/harness/proc"
)

// Redis with failover: the ports and the master name the Sentinels know.
const (
	RedisPort    = 6379
	SentinelPort = 26379
	MasterName   = "orders"
)

// SentinelOptions configures StartSentinel.
type SentinelOptions struct {
	Password string    // requirepass and masterauth of both nodes; required
	Out      io.Writer // every process's output, prefixed
	// MinReplicasToWrite makes the primary refuse writes while fewer
	// replicas are connected with a lag of at most MinReplicasMaxLag
	// (Redis's min-replicas-to-write / min-replicas-max-lag); 0 is off,
	// Redis's default. With 1, a primary cut off from its replicas stops
	// taking writes after MinReplicasMaxLag — above all, once healed, it
	// takes none before the Sentinels demote it — and with two replicas
	// one node can be lost without stopping writes. It bounds, but does
	// not close, what an asynchronous replica can miss.
	MinReplicasToWrite int
}

// MinReplicasMaxLag is the nodes' min-replicas-max-lag (seconds): how
// long a primary that lost its replicas goes on taking writes, when
// SentinelOptions.MinReplicasToWrite is set. Replicas acknowledge once a
// second; 2 s leaves room for one late acknowledgement on a busy host.
const MinReplicasMaxLag = 2

// Sentinel is Redis with failover on three hosts, a redis-server and a
// Sentinel on each: the primary on the first, a replica of it on each of
// the other two. Replication is Redis's own: asynchronous.
type Sentinel struct {
	Hosts     []*hosts.Host
	Nodes     []*RedisNode // [0] starts as the primary, [1] and [2] as its replicas
	Sentinels []*proc.Process
	opts      SentinelOptions
	dir       string
}

// RedisNode is one redis-server of the three.
type RedisNode struct {
	Host *hosts.Host
	Addr string // host:port
	conf string
	proc *proc.Process
}

// StartSentinel adds three hosts to n and starts the nodes and the
// Sentinels on them; it returns once both replicas are in sync and every
// Sentinel sees the primary, the replicas and the two other Sentinels.
func StartSentinel(ctx context.Context, n *hosts.Net, opts SentinelOptions) (s *Sentinel, err error) {
	for _, bin := range []string{"redis-server", "redis-sentinel"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not installed: apt-get install -y redis-server redis-sentinel", bin)
		}
	}
	if opts.Password == "" {
		return nil, errors.New("cluster: a Sentinel setup needs a password")
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	s = &Sentinel{opts: opts}
	if s.dir, err = os.MkdirTemp("", "dapr-pub-sub-sentinel-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	for _, name := range []string{"r1", "r2", "r3"} {
		h, err := n.Add(name)
		if err != nil {
			return s, err
		}
		s.Hosts = append(s.Hosts, h)
	}
	primary := net.JoinHostPort(s.Hosts[0].Addr.String(), strconv.Itoa(RedisPort))
	for i, h := range s.Hosts {
		node := &RedisNode{Host: h, Addr: net.JoinHostPort(h.Addr.String(), strconv.Itoa(RedisPort))}
		dir := filepath.Join(s.dir, "redis-"+h.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return s, err
		}
		conf := fmt.Sprintf("port %d\nbind %s\ndir %q\nappendonly yes\nappendfsync always\nsave \"\"\ndaemonize no\nlogfile \"\"\nloglevel warning\n"+
			"protected-mode no\nrequirepass %q\nmasterauth %q\nreplica-announce-ip %s\n",
			RedisPort, h.Addr, dir, opts.Password, opts.Password, h.Addr)
		if opts.MinReplicasToWrite > 0 {
			conf += fmt.Sprintf("min-replicas-to-write %d\nmin-replicas-max-lag %d\n", opts.MinReplicasToWrite, MinReplicasMaxLag)
		}
		if i > 0 {
			conf += fmt.Sprintf("replicaof %s %d\n", s.Hosts[0].Addr, RedisPort)
		}
		node.conf = filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			return s, err
		}
		s.Nodes = append(s.Nodes, node)
		if err := node.Start(opts.Out); err != nil {
			return s, err
		}
	}
	for _, h := range s.Hosts {
		conf := fmt.Sprintf("port %d\nbind %s\ndaemonize no\nlogfile \"\"\nloglevel warning\nprotected-mode no\nsentinel announce-ip %s\n"+
			"sentinel monitor %s %s %d 2\nsentinel auth-pass %s %q\nsentinel down-after-milliseconds %s 5000\n"+
			"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			SentinelPort, h.Addr, h.Addr, MasterName, s.Hosts[0].Addr, RedisPort, MasterName, opts.Password, MasterName, MasterName, MasterName)
		path := filepath.Join(s.dir, "sentinel-"+h.Name+".conf") // Sentinel rewrites it
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return s, err
		}
		argv := h.Argv("redis-sentinel", path)
		p := &proc.Process{Name: "sentinel-" + h.Name, Path: argv[0], Args: argv[1:], Out: opts.Out}
		if err := p.Start(); err != nil {
			return s, err
		}
		s.Sentinels = append(s.Sentinels, p)
	}
	return s, s.waitSettled(ctx, primary)
}

// Start starts the node's redis-server (again, after Kill: it rejoins as
// whatever its config says; Sentinel rewrites it on a failover).
func (r *RedisNode) Start(out io.Writer) error {
	argv := r.Host.Argv("redis-server", r.conf)
	r.proc = &proc.Process{Name: "redis-" + r.Host.Name, Path: argv[0], Args: argv[1:], Out: out}
	return r.proc.Start()
}

// Kill kills the node's redis-server with SIGKILL (no shutdown, no
// last fsync) and waits for it to go.
func (r *RedisNode) Kill() {
	if r.proc != nil && !r.proc.Exited() {
		r.proc.Signal(syscall.SIGKILL)
		<-r.proc.Done()
	}
}

// Restart stops the node's redis-server gracefully (SIGTERM: Redis
// writes and fsyncs, then exits) and starts it again.
func (r *RedisNode) Restart() error { return r.proc.Restart() }

// Process is the node's redis-server.
func (r *RedisNode) Process() *proc.Process { return r.proc }

// Password is what clients AUTH with.
func (s *Sentinel) Password() string { return s.opts.Password }

// SentinelAddrs are the Sentinels' host:port, comma-separated, as Dapr's
// Redis components take them in redisHost (with failover: "true").
func (s *Sentinel) SentinelAddrs() string {
	addrs := make([]string, len(s.Hosts))
	for i, h := range s.Hosts {
		addrs[i] = net.JoinHostPort(h.Addr.String(), strconv.Itoa(SentinelPort))
	}
	return strings.Join(addrs, ",")
}

// Client is a go-redis client that follows the primary through the
// Sentinels.
func (s *Sentinel) Client() *redis.Client {
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: strings.Split(s.SentinelAddrs(), ","),
		Password: s.opts.Password, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
}

// Primary asks the Sentinels which node is the primary now.
func (s *Sentinel) Primary(ctx context.Context) (*RedisNode, error) {
	var errs []error
	for _, addr := range strings.Split(s.SentinelAddrs(), ",") {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second})
		got, err := c.GetMasterAddrByName(ctx, MasterName).Result()
		c.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range s.Nodes {
			if n.Addr == net.JoinHostPort(got[0], got[1]) {
				return n, nil
			}
		}
		return nil, fmt.Errorf("the Sentinels name %v, which is no node of ours", got)
	}
	return nil, fmt.Errorf("no Sentinel answers: %w", errors.Join(errs...))
}

// RestartSentinel stops Sentinel i gracefully and starts it again, with
// the config it rewrote.
func (s *Sentinel) RestartSentinel(i int) error { return s.Sentinels[i].Restart() }

// Failover moves the primary to a replica without losing a write, as
// an operator does before a planned restart of the primary:
//
//  1. CLIENT PAUSE WRITE on the primary: writes wait, reads go on;
//  2. wait until the replicas have applied everything the primary has
//     (their slave_repl_offset reaches the primary's master_repl_offset);
//  3. SENTINEL FAILOVER, and wait until a replica took over;
//  4. REPLICAOF the new primary on the old one — at once, not after the
//     Sentinels' ~8 s — then CLIENT UNPAUSE: the writes held meanwhile
//     now fail on a replica (READONLY), and their clients retry them on
//     the new primary.
//
// SENTINEL FAILOVER alone promotes the replica without waiting for it,
// and clients keep writing to the old primary until it is demoted: a
// write acknowledged then is gone (measured: a duplicate effect in two
// of three rolling restarts). Writes wait for the length of the switch
// (about a second); the pause lifts by itself after 30 s if this fails
// half way.
func (s *Sentinel) Failover(ctx context.Context) (*RedisNode, error) {
	old, err := s.Primary(ctx)
	if err != nil {
		return nil, err
	}
	pc := s.nodeClient(old)
	defer pc.Close()
	if err := pc.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		return nil, fmt.Errorf("pause writes on %s: %w", old.Addr, err)
	}
	defer pc.Do(context.WithoutCancel(ctx), "CLIENT", "UNPAUSE") // after the REPLICAOF below, or on failure
	for _, n := range s.Nodes {
		if n == old {
			continue
		}
		if err := s.waitCaughtUp(ctx, pc, n); err != nil { // whichever the Sentinels promote
			return nil, err
		}
	}
	addr := strings.Split(s.SentinelAddrs(), ",")[0]
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	err = c.Failover(ctx, MasterName).Err()
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL FAILOVER at %s: %w", addr, err)
	}
	p, err := s.WaitFailedOver(ctx, old)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(p.Addr)
	if err := pc.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		return nil, fmt.Errorf("demote %s: %w", old.Addr, err)
	}
	return p, nil
}

// nodeClient is a client of node n itself (not following the Sentinels).
func (s *Sentinel) nodeClient(n *RedisNode) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr, Password: s.opts.Password, DialTimeout: time.Second, MaxRetries: -1})
}

// waitCaughtUp waits, for at most 10 s, until replica has applied the
// primary's (pc's) whole replication stream.
func (s *Sentinel) waitCaughtUp(ctx context.Context, pc *redis.Client, replica *RedisNode) error {
	rc := s.nodeClient(replica)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		want, err := infoInt(ctx, pc, "master_repl_offset")
		if err != nil {
			return err
		}
		got, err := infoInt(ctx, rc, "slave_repl_offset")
		if err == nil && got >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %s at offset %d of %d: %w", replica.Addr, got, want, errors.Join(err, ctx.Err()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// infoInt is field of INFO replication as a number.
func infoInt(ctx context.Context, c *redis.Client, field string) (int64, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO replication has no %s", field)
}

// WaitSettled waits until the Sentinels agree on a primary that has the
// other nodes as in-sync replicas, and returns the primary.
func (s *Sentinel) WaitSettled(ctx context.Context) (*RedisNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		p, err := s.Primary(ctx)
		if err == nil {
			if err = s.settled(ctx, p.Addr); err == nil {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis with failover did not settle: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSettled waits until the primary at addr has the other nodes as
// replicas in sync and every Sentinel sees it as the primary, with the
// replicas and the other Sentinels.
func (s *Sentinel) waitSettled(ctx context.Context, primary string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if last = s.settled(ctx, primary); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis with failover did not settle: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Sentinel) settled(ctx context.Context, primary string) error {
	replicas := len(s.Nodes) - 1
	c := redis.NewClient(&redis.Options{Addr: primary, Password: s.opts.Password, DialTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, fmt.Sprintf("connected_slaves:%d", replicas)) || strings.Count(info, "state=online") != replicas {
		return fmt.Errorf("primary %s: %s", primary, strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
	}
	for _, addr := range strings.Split(s.SentinelAddrs(), ",") {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
		m, err := sc.Master(ctx, MasterName).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", addr, err)
		}
		if got := net.JoinHostPort(m["ip"], m["port"]); got != primary || m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != "2" {
			return fmt.Errorf("sentinel %s sees primary %s, %s replicas, %s other sentinels", addr, got, m["num-slaves"], m["num-other-sentinels"])
		}
		if err := promotable(ctx, addr); err != nil {
			return err
		}
	}
	return nil
}

// promotable fails unless the Sentinel at addr could promote each replica
// it knows: connected, answering, its INFO fresh and its link to the
// primary up — what Redis's sentinelSelectSlave asks before a failover
// (without it, one right after a start or a restart can be refused with
// NOGOODSLAVE: the Sentinel has not yet had a replica's INFO).
func promotable(ctx context.Context, addr string) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer sc.Close()
	rs, err := sc.Replicas(ctx, MasterName).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: %w", addr, err)
	}
	for _, r := range rs {
		refresh, _ := strconv.Atoi(r["info-refresh"])
		ping, _ := strconv.Atoi(r["last-ok-ping-reply"])
		// Redis 7.0 src/sentinel.c: INFO valid for 3 INFO periods (10 s),
		// a reply to PING within 5 PING periods (1 s).
		if r["flags"] != "slave" || r["master-link-status"] != "ok" || refresh > 30000 || ping > 5000 {
			return fmt.Errorf("sentinel %s cannot promote replica %s:%s yet: flags %s, link %s, INFO %s ms old, PING answered %s ms ago",
				addr, r["ip"], r["port"], r["flags"], r["master-link-status"], r["info-refresh"], r["last-ok-ping-reply"])
		}
	}
	return nil
}

// WaitFailedOver waits until the Sentinels name a primary other than old
// and it accepts writes.
func (s *Sentinel) WaitFailedOver(ctx context.Context, old *RedisNode) (*RedisNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		p, err := s.Primary(ctx)
		if err == nil && p != old {
			c := redis.NewClient(&redis.Options{Addr: p.Addr, Password: s.opts.Password, DialTimeout: time.Second})
			role, rerr := c.Do(ctx, "ROLE").Slice()
			c.Close()
			if rerr == nil && len(role) > 0 && role[0] == "master" {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no failover away from %s: %w", old.Addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops every process and removes the data.
func (s *Sentinel) Stop() {
	for _, p := range s.Sentinels {
		p.Stop(proc.StopGrace)
	}
	for _, n := range s.Nodes {
		if n.proc != nil {
			n.proc.Stop(proc.StopGrace)
		}
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}
