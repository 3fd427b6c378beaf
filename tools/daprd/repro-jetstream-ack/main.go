// Command repro-jetstream-ack reproduces a defect of Dapr's NATS JetStream
// pub/sub component (components-contrib pubsub/jetstream, v1.16.5 and
// v1.18.0): with concurrency "parallel" a message is acknowledged to
// JetStream before the app has answered it, so a daprd that dies while its
// app works loses the message.
//
// The component subscribes without nats.ManualAck(), and nats.go then wraps
// its callback in an automatic Ack after the callback returns (nats.go
// js.go: "Auto acknowledge unless manual ack is set"). With "parallel" the
// callback only starts a goroutine for the app and returns.
//
// The run, against a nats-server of its own (JetStream on, a temporary
// folder): for contrib's component and for the copy this project patched
// (tools/daprd/jetstream: nats.ManualAck() on the subscription), a stream,
// the component subscribed with an explicit-ack durable consumer and
// concurrency parallel, one message published, and a handler that holds
// it. While the handler holds it, the consumer's NumAckPending says whether
// JetStream still waits for the acknowledgement (1) or already has it (0).
// Then the handler answers success, and the component's own Ack is either
// the one that counts or fails with "message was already acknowledged".
// The defect is reproduced when contrib's component shows 0.
//
// Run from tools/daprd: go run ./repro-jetstream-ack (needs nats-server on
// PATH or in /usr/sbin: apt-get install nats-server).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	contrib "github.com/dapr/components-contrib/pubsub/jetstream"

	"github.com/dapr/components-contrib/metadata"
	"github.com/dapr/components-contrib/pubsub"
	"github.com/dapr/kit/logger"

	patched "dapr-pub-sub/tools/daprd/jetstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nats-server"); serr != nil {
			return errors.New("nats-server is not installed: apt-get install -y nats-server")
		}
		bin = "/usr/sbin/nats-server"
	}
	dir, err := os.MkdirTemp("", "repro-jetstream-ack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	srv := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", dir)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	nc, err := connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}

	results := map[string]int{}
	for _, v := range []struct {
		name string
		new  func(logger.Logger) pubsub.PubSub
	}{
		{"contrib", contrib.NewJetStream},
		{"patched", patched.NewJetStream},
	} {
		pending, err := trial(js, url, v.name, v.new)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		results[v.name] = pending
		fmt.Printf("%s component: while the handler holds the message, JetStream's NumAckPending = %d (%s)\n",
			v.name, pending, map[bool]string{true: "acknowledged before the app answered", false: "waits for the app"}[pending == 0])
	}
	if results["patched"] != 1 {
		return errors.New("the patched component did not keep the message unacknowledged while the handler held it")
	}
	if results["contrib"] == 0 {
		return errors.New("REPRODUCED: components-contrib's pubsub.jetstream (concurrency parallel) acknowledged the message before the handler returned; a daprd crash now loses it")
	}
	fmt.Println("not reproduced: contrib's component waited for the handler")
	return nil
}

// trial subscribes the component made by newComponent to a stream of its
// own, publishes one message, and returns the consumer's NumAckPending
// while the handler holds the message.
func trial(js nats.JetStreamContext, url, name string, newComponent func(logger.Logger) pubsub.PubSub) (int, error) {
	subject := "orders-" + name
	if _, err := js.AddStream(&nats.StreamConfig{Name: subject, Subjects: []string{subject}}); err != nil {
		return 0, err
	}
	c := newComponent(logger.NewLogger("repro." + name))
	defer c.Close()
	props := map[string]string{
		"natsURL": url, "durableName": name, "queueGroupName": name, "deliverPolicy": "all",
		"ackPolicy": "explicit", "ackWait": "30s", "concurrency": "parallel",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Init(ctx, pubsub.Metadata{Base: metadata.Base{Properties: props}}); err != nil {
		return 0, err
	}
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	err := c.Subscribe(ctx, pubsub.SubscribeRequest{Topic: subject}, func(context.Context, *pubsub.NewMessage) error {
		close(started)
		<-release // the app at work
		defer close(done)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, err := js.Publish(subject, []byte(`{"id":1}`)); err != nil {
		return 0, err
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		return 0, errors.New("the handler was not called within 10 s")
	}
	// nats.go acknowledges right after the callback returns: look for up
	// to 2 s, while the handler still holds the message.
	var info *nats.ConsumerInfo
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if info, err = js.ConsumerInfo(subject, name); err != nil {
			return 0, err
		}
		if info.NumAckPending == 0 || time.Now().After(deadline) {
			break
		}
	}
	close(release)
	<-done
	time.Sleep(200 * time.Millisecond) // the component's own Ack, and its log line, after the handler
	return info.NumAckPending, nil
}

func connect(url string) (*nats.Conn, error) {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var nc *nats.Conn
		if nc, err = nats.Connect(url); err == nil {
			return nc, nil
		}
	}
	return nil, fmt.Errorf("nats-server did not answer: %w", err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
