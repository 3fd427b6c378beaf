// Command repro-rabbitmq-confirm reproduces, against a real daprd and
// RabbitMQ, a defect of Dapr's RabbitMQ pub/sub component
// (components-contrib pubsub/rabbitmq/rabbitmq.go, 1.16.5 and 1.18.0): with
// publisherConfirm on, a publish the broker never confirmed is answered as
// a success.
//
// publishSync waits for the broker's confirmation (confirm.Wait()); when it
// does not come — the broker nacks, or the connection drops first, and
// amqp091 then answers every pending confirmation with false — it logs
// "did not receive confirmation of publishing" into err, and returns nil
// anyway. Publish takes nil as done: daprd answers the app 204, and the
// message is lost. (Publish also returns nil, not an error, when its
// context ends while it waits to reconnect or to retry.)
//
// The run: a rabbitmq-server and a daprd with the component, publisher
// confirms, durable exchange, persistent messages; a durable queue bound to
// the topic's exchange. One event is published and confirmed (the queue
// holds 1). Then RabbitMQ is frozen (SIGSTOP), an event is published, and
// while daprd waits for its confirmation RabbitMQ is killed (SIGKILL) and
// started again on its data. The defect is reproduced when daprd answered
// the second publish with success and the queue holds only the first.
//
// It uses no code of this project but tools/reprokit. Run: go run
// ./tools/repro-rabbitmq-confirm (DAPRD=/path/to/daprd for another daprd).
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"dapr-pub-sub/tools/reprokit"
)

const component = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.rabbitmq
  version: v1
  metadata:
    - name: connectionString
      value: amqp://guest:guest@127.0.0.1:%d
    - name: durable
      value: "true"
    - name: deliveryMode
      value: "2"
    - name: publisherConfirm
      value: "true"
`

// The topic, and the queue bound to its exchange (Dapr declares a fanout
// exchange named after the topic).
const topic, queue = "orders", "repro-orders"

func main() { reprokit.Main(run) }

// rabbit is one rabbitmq-server node, on its own ports and data folder, so
// that it can be killed and started again on the same data.
type rabbit struct {
	dir   string
	ports []int // AMQP, distribution, epmd
	cmd   *exec.Cmd
}

func (r *rabbit) start() error {
	bin := "/usr/lib/rabbitmq/bin/rabbitmq-server" // not Debian's wrapper, which leaves our process group
	if _, err := os.Stat(bin); err != nil {
		return errors.New("no rabbitmq-server: apt-get install -y rabbitmq-server")
	}
	if err := os.WriteFile(filepath.Join(r.dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(r.dir, "rabbitmq.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	r.cmd = exec.Command(bin)
	r.cmd.Stdout, r.cmd.Stderr = log, log
	r.cmd.Dir = r.dir // Mnesia writes its core dump, after the kill, to the working folder
	// A process group: the script starts the Erlang VM as its child, and
	// the signals below are for both.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r.cmd.Env = append(os.Environ(), "HOME="+r.dir,
		"RABBITMQ_NODENAME=repro"+strconv.Itoa(r.ports[0])+"@localhost", "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(r.ports[0]), "RABBITMQ_DIST_PORT="+strconv.Itoa(r.ports[1]),
		"ERL_EPMD_ADDRESS=127.0.0.1", "ERL_EPMD_PORT="+strconv.Itoa(r.ports[2]),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.dir, "mnesia"), "RABBITMQ_LOG_BASE="+filepath.Join(r.dir, "log"), "RABBITMQ_LOGS=-",
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(r.dir, "enabled_plugins"), "RABBITMQ_CONFIG_FILE="+filepath.Join(r.dir, "rabbitmq"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(r.dir, "feature_flags"), "RABBITMQ_PLUGINS_EXPAND_DIR="+filepath.Join(r.dir, "plugins-expand"),
		"RABBITMQ_GENERATED_CONFIG_DIR="+filepath.Join(r.dir, "config"), "RABBITMQ_SCHEMA_DIR="+filepath.Join(r.dir, "schema"),
		"RABBITMQ_PID_FILE="+filepath.Join(r.dir, "rabbitmq.pid"), "RABBITMQ_QUORUM_DIR="+filepath.Join(r.dir, "quorum"),
		"ERL_CRASH_DUMP="+filepath.Join(r.dir, "erl_crash.dump"))
	if err := r.cmd.Start(); err != nil {
		return err
	}
	// Ready when an AMQP connection opens.
	return reprokit.WaitFor(2*time.Minute, func() bool {
		c, err := r.dial()
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (r *rabbit) dial() (*amqp.Connection, error) {
	return amqp.Dial("amqp://guest:guest@127.0.0.1:" + strconv.Itoa(r.ports[0]))
}

// queued is how many messages the queue holds.
func (r *rabbit) queued() (int, error) {
	c, err := r.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

// signal sends sig to the node's process group.
func (r *rabbit) signal(sig syscall.Signal) error { return syscall.Kill(-r.cmd.Process.Pid, sig) }

// kill kills the node (SIGKILL) and reaps it.
func (r *rabbit) kill() {
	_ = r.signal(syscall.SIGKILL)
	_ = r.cmd.Wait()
}

// stop kills the node and its epmd.
func (r *rabbit) stop() {
	if r.cmd != nil {
		r.kill()
	}
	epmd := exec.Command("epmd", "-kill")
	epmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(r.ports[2]))
	_ = epmd.Run() // best effort: epmd is a daemon
}

func run() error {
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repro-rabbitmq-confirm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := reprokit.FreePorts(3)
	if err != nil {
		return err
	}
	r := &rabbit{dir: filepath.Join(dir, "rabbitmq"), ports: ports}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	defer r.stop()
	if err := r.start(); err != nil {
		return fmt.Errorf("rabbitmq-server: %w (log: %s)", err, filepath.Join(r.dir, "rabbitmq.log"))
	}
	res := filepath.Join(dir, "resources")
	if err := os.MkdirAll(res, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(res, "pubsub.yaml"), fmt.Appendf(nil, component, ports[0]), 0o644); err != nil {
		return err
	}
	side, err := reprokit.StartSidecar(daprd, dir, "publisher", res)
	if err != nil {
		return err
	}
	defer reprokit.Stop(side.Cmd)
	fmt.Printf("daprd %s, rabbitmq-server on 127.0.0.1:%d\n", side.Version, ports[0])

	publish := func(id int) (int, error) {
		body := fmt.Sprintf(`{"id":%d,"message":"repro"}`, id)
		resp, err := (&http.Client{Timeout: 3 * time.Minute}).Post(side.URL+"/v1.0/publish/pubsub/"+topic, "application/json", bytes.NewBufferString(body))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// The first publish declares the exchange; then a durable queue bound
	// to it keeps what the broker confirmed.
	if code, err := publish(1); err != nil || code != http.StatusNoContent {
		return fmt.Errorf("the first publish: %d %w (daprd log: %s)", code, err, side.Log)
	}
	if err := bindQueue(r); err != nil {
		return err
	}
	if code, err := publish(2); err != nil || code != http.StatusNoContent {
		return fmt.Errorf("the second publish: %d %w", code, err)
	}
	if n, err := r.queued(); err != nil || n != 1 {
		return fmt.Errorf("the queue holds %d after a confirmed publish, want 1: %w", n, err)
	}
	fmt.Println("1. a publish with RabbitMQ up: 204, the queue holds 1")

	// Frozen: daprd writes the publish and waits for its confirmation.
	if err := r.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	type answer struct {
		code int
		err  error
		took time.Duration
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		code, err := publish(3)
		done <- answer{code, err, time.Since(start)}
	}()
	select {
	case a := <-done:
		return fmt.Errorf("the publish to a frozen RabbitMQ answered at once: %d %w", a.code, a.err)
	case <-time.After(2 * time.Second):
	}
	fmt.Println("2. RabbitMQ frozen, an event published: no answer yet after 2 s (daprd waits for the confirmation)")
	r.kill() // what it had not confirmed is gone
	a := <-done
	fmt.Printf("3. RabbitMQ killed: daprd answered the publish %d after %s (err %v)\n", a.code, a.took.Round(100*time.Millisecond), a.err)
	if err := r.start(); err != nil {
		return fmt.Errorf("rabbitmq-server again: %w", err)
	}
	n, err := r.queued()
	if err != nil {
		return err
	}
	fmt.Printf("4. RabbitMQ started again on its data: the queue holds %d\n", n)
	switch {
	case a.err == nil && a.code == http.StatusNoContent && n == 1:
		said := "and logged nothing about it"
		if b, err := os.ReadFile(side.Log); err == nil && bytes.Contains(b, []byte("did not receive confirmation of publishing")) {
			said = `though it logged "did not receive confirmation of publishing"`
		}
		return fmt.Errorf("REPRODUCED: daprd answered 204 for an event RabbitMQ never confirmed, %s; the event is not in the queue", said)
	case a.code == http.StatusNoContent && n != 2:
		return fmt.Errorf("unexpected: 204 and the queue holds %d", n)
	}
	fmt.Println("not reproduced: the publish failed, or the event is in the queue")
	return nil
}

// bindQueue declares the durable queue and binds it to the topic's
// exchange.
func bindQueue(r *rabbit) error {
	c, err := r.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		return err
	}
	return ch.QueueBind(queue, "", topic, false, nil)
}
