package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// RedisSource says where Redis (the state store, and the default broker) comes from.
type RedisSource string

// Redis sources. RedisAuto tries them in the order listed.
const (
	RedisAuto     RedisSource = "auto"         // the first of the three below that works
	RedisExisting RedisSource = "existing"     // a Redis already answering at the address
	RedisServer   RedisSource = "redis-server" // redis-server started here, AOF on, data in a temp folder
	RedisEmbedded RedisSource = "embedded"     // miniredis in this process: test-grade, keeps nothing
)

// Redis is a running Redis: the state store, and the broker behind pubsub unless another is chosen.
type Redis struct {
	Addr     string      // host:port
	Password string      // what clients AUTH with; "" for none
	Source   RedisSource // how it was obtained (never RedisAuto)
	Dir      string      // redis-server's data folder (RedisServer)

	proc    *Process
	mini    *miniredis.Miniredis
	tempDir bool // Dir was made by StartRedis and goes with Stop
}

// RedisOptions configures StartRedis.
type RedisOptions struct {
	Source RedisSource // default RedisAuto
	Addr   string      // host:port, default 127.0.0.1:6379
	Dir    string      // redis-server data folder; default a new temp folder
	Out    io.Writer   // broker output and notices
	// Password is required by a Redis the launcher starts ("" for none).
	// It is never printed, and goes to redis-server in a 0600 config file,
	// not on its command line.
	Password string
	// ExistingPassword is what to AUTH with against a Redis that is
	// already there ("" for none): the user's REDIS_PASSWORD.
	ExistingPassword string
}

// StartRedis makes a Redis answer at opts.Addr, as opts.Source says, and
// waits until it answers PING.
func StartRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if opts.Source == "" {
		opts.Source = RedisAuto
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:6379"
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	source := opts.Source
	if source == RedisAuto || source == RedisExisting {
		err := ping(opts.Addr, opts.ExistingPassword)
		if err == nil {
			fmt.Fprintf(opts.Out, "Using the Redis already answering at %s\n", opts.Addr)
			return &Redis{Addr: opts.Addr, Password: opts.ExistingPassword, Source: RedisExisting}, nil
		}
		if source == RedisExisting {
			return nil, fmt.Errorf("no Redis answers at %s: %w (start one, or use -redis %q or %q)", opts.Addr, err, RedisServer, RedisEmbedded)
		}
		if !isRefused(err) {
			return nil, fmt.Errorf("something that is not a usable Redis holds %s: %w (stop it, or point REDIS_ADDR at another port)", opts.Addr, err)
		}
		source = RedisServer
		if _, err := exec.LookPath("redis-server"); err != nil {
			fmt.Fprintln(opts.Out, "WARNING: redis-server is not installed (apt-get install redis-server); using an embedded in-memory Redis (miniredis).")
			source = RedisEmbedded
		}
	}
	switch source {
	case RedisServer:
		return startRedisServer(ctx, opts)
	case RedisEmbedded:
		fmt.Fprintln(opts.Out, "WARNING: the embedded Redis keeps nothing after exit and is for trying the system out, not for production.")
		m := miniredis.NewMiniRedis()
		if opts.Password != "" {
			m.RequireAuth(opts.Password)
		}
		if err := m.StartAddr(opts.Addr); err != nil {
			return nil, fmt.Errorf("start embedded Redis on %s: %w", opts.Addr, err)
		}
		return &Redis{Addr: opts.Addr, Password: opts.Password, Source: RedisEmbedded, mini: m}, nil
	}
	return nil, fmt.Errorf("unknown Redis source %q: use %s, %s, %s or %s", source, RedisAuto, RedisExisting, RedisServer, RedisEmbedded)
}

func startRedisServer(ctx context.Context, opts RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed: apt-get install -y redis-server (or use -redis %q)", RedisEmbedded)
	}
	host, port, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("redis address %q: %w", opts.Addr, err)
	}
	dir, tempDir := opts.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "dapr-pub-sub-redis-"); err != nil {
			return nil, err
		}
		tempDir = true
	}
	// AOF with fsync on every write: an acknowledged publish survives a
	// SIGKILL of Redis. The stock config has no persistence at all.
	conf := fmt.Sprintf("port %s\nbind %s\ndir %q\nappendonly yes\nappendfsync always\nsave \"\"\n"+
		"daemonize no\nlogfile \"\"\nloglevel warning\nprotected-mode yes\n", port, host, dir)
	if opts.Password != "" {
		conf += fmt.Sprintf("requirepass %q\n", opts.Password)
	}
	confPath := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p := &Process{Name: "redis", Path: bin, Out: opts.Out, Args: []string{confPath}}
	if err := p.Start(); err != nil {
		return nil, err
	}
	b := &Redis{Addr: opts.Addr, Password: opts.Password, Source: RedisServer, Dir: dir, proc: p, tempDir: tempDir}
	if err := b.WaitReady(ctx); err != nil {
		b.Stop()
		return nil, err
	}
	return b, nil
}

// WaitReady polls until the broker answers PING, or its process exits.
func (b *Redis) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := ping(b.Addr, b.Password)
		if err == nil {
			return nil
		}
		if perr := pause(ctx, b.proc); perr != nil {
			return fmt.Errorf("redis at %s did not become ready (%w): %w", b.Addr, err, perr)
		}
	}
}

// Process is the redis-server process, or nil in other modes.
func (b *Redis) Process() *Process { return b.proc }

// Restart starts redis-server again on the same address and data folder,
// after a fault test killed it. Only for RedisServer.
func (b *Redis) Restart(ctx context.Context) error {
	if b.Source != RedisServer {
		return fmt.Errorf("restart: Redis source %q is not %q", b.Source, RedisServer)
	}
	b.proc.Stop(5 * time.Second)
	nb, err := startRedisServer(ctx, RedisOptions{Addr: b.Addr, Dir: b.Dir, Out: b.proc.Out, Password: b.Password})
	if err != nil {
		return err
	}
	b.proc = nb.proc
	return nil
}

// Stop stops what StartRedis started, and removes the data folder if it
// made one; a Redis that was already there is left alone.
func (b *Redis) Stop() {
	if b.proc != nil {
		b.proc.Stop(5 * time.Second)
	}
	if b.mini != nil {
		b.mini.Close()
	}
	if b.tempDir {
		os.RemoveAll(b.Dir)
	}
}

// ping sends a RESP PING to addr, after an AUTH with password if it is set,
// and wants +PONG.
func ping(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if password != "" {
		if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("no RESP answer to AUTH: %w", err)
		}
		if line = strings.TrimSpace(line); line != "+OK" {
			// The answer never echoes the password.
			return fmt.Errorf("AUTH answered %s (set REDIS_PASSWORD to that Redis's password)", strconv.Quote(line))
		}
	}
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no RESP answer to PING: %w", err)
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %s", strconv.Quote(line))
	}
	return nil
}

func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}
