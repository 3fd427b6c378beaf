// Command repro-mqtt-resumed-session reproduces a defect of Dapr's MQTT 3
// pub/sub component (components-contrib pubsub/mqtt3, v1.16.5 and v1.18.0):
// with cleanSession false, a daprd that restarts while the broker holds
// messages it had not acknowledged receives nothing again.
//
// On connect the broker resumes the session and sends again, at once, every
// QoS 1 message the old client had not acknowledged. The component connects
// in Init but adds the topic's route only in Subscribe, which daprd calls
// later; paho drops a message with no route unacknowledged (router.go: "no
// handler was available. Message will NOT be acknowledged"), and it keeps
// its place in the broker's in-flight window for the whole connection
// (mosquitto's max_inflight_messages, 20 by default). Once the window is
// full of such messages the broker sends nothing more on that connection.
//
// The run, against a mosquitto of its own: for contrib's component and for
// the copy this project patched (tools/daprd/mqtt3: such a message waits
// for its route), a component subscribes with a persistent session and a
// handler that holds every message (an app at work), 30 messages are
// published, the component is closed while it holds the first 20 (a crash,
// as the broker sees it: none was acknowledged), and a new component with
// the same client id connects and, 1 s later — daprd subscribes once the
// app is up — subscribes with a handler that accepts. The defect is
// reproduced when contrib's new component receives fewer than 30 in 15 s.
//
// Run from tools/daprd: go run ./repro-mqtt-resumed-session (needs
// mosquitto on PATH or in /usr/sbin: apt-get install mosquitto).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	contrib "github.com/dapr/components-contrib/pubsub/mqtt3"

	"github.com/dapr/components-contrib/metadata"
	"github.com/dapr/components-contrib/pubsub"
	"github.com/dapr/kit/logger"

	patched "dapr-pub-sub/tools/daprd/mqtt3"
)

const messages = 30

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			return errors.New("mosquitto is not installed: apt-get install -y mosquitto")
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir, err := os.MkdirTemp("", "repro-mqtt-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\n", port), 0o600); err != nil {
		return err
	}
	srv := exec.Command(bin, "-c", conf)
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	url := "tcp://127.0.0.1:" + strconv.Itoa(port)
	pub, err := connect(url)
	if err != nil {
		return err
	}
	defer pub.Disconnect(100)

	got := map[string]int64{}
	for _, v := range []struct {
		name string
		new  func(logger.Logger) pubsub.PubSub
	}{
		{"contrib", contrib.NewMQTTPubSub},
		{"patched", patched.NewMQTTPubSub},
	} {
		n, err := trial(pub, url, v.name, v.new)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		got[v.name] = n
		fmt.Printf("%s component: after the restart, %d of %d messages received in 15 s\n", v.name, n, messages)
	}
	if got["patched"] != messages {
		return fmt.Errorf("the patched component received %d of %d after the restart", got["patched"], messages)
	}
	if got["contrib"] < messages {
		return fmt.Errorf("REPRODUCED: components-contrib's pubsub.mqtt3 received %d of %d messages after a restart on a resumed session; the rest stay with the broker, undelivered", got["contrib"], messages)
	}
	fmt.Println("not reproduced: contrib's component received every message after the restart")
	return nil
}

// trial runs the crash and restart with the component newComponent makes
// and returns how many messages the restarted one received.
func trial(pub paho.Client, url, name string, newComponent func(logger.Logger) pubsub.PubSub) (int64, error) {
	topic := "orders-" + name
	props := map[string]string{"url": url, "consumerID": "repro-" + name, "qos": "1", "cleanSession": "false"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The first daprd: its app holds every message it is given.
	quiet := logger.NewLogger("repro." + name + ".first")
	quiet.SetOutputLevel(logger.FatalLevel) // its handler's "failures" are the crash
	first := newComponent(quiet)
	if err := first.Init(ctx, pubsub.Metadata{Base: metadata.Base{Properties: props}}); err != nil {
		return 0, err
	}
	var held atomic.Int64
	stop := make(chan struct{})
	var holding sync.WaitGroup
	err := first.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(context.Context, *pubsub.NewMessage) error {
		holding.Add(1)
		defer holding.Done()
		held.Add(1)
		<-stop
		return errors.New("the process died") // not acknowledged
	})
	if err != nil {
		return 0, err
	}
	for i := range messages {
		if t := pub.Publish(topic, 1, false, strconv.Itoa(i)); t.WaitTimeout(5*time.Second) && t.Error() != nil {
			return 0, t.Error()
		}
	}
	if !poll(10*time.Second, func() bool { return held.Load() >= 20 }) {
		return 0, fmt.Errorf("the first component was given %d messages, want the broker's in-flight window (20)", held.Load())
	}
	_ = first.Close() // as the broker sees a crash: none of them acknowledged
	close(stop)
	holding.Wait()

	// The restarted daprd: connects, and subscribes once its app is up.
	second := newComponent(logger.NewLogger("repro." + name + ".second"))
	defer second.Close()
	if err := second.Init(ctx, pubsub.Metadata{Base: metadata.Base{Properties: props}}); err != nil {
		return 0, err
	}
	time.Sleep(time.Second) // daprd subscribes after Init, once the app answers: the defect's window
	var received atomic.Int64
	err = second.Subscribe(ctx, pubsub.SubscribeRequest{Topic: topic}, func(context.Context, *pubsub.NewMessage) error {
		received.Add(1)
		return nil
	})
	if err != nil {
		return 0, err
	}
	poll(15*time.Second, func() bool { return received.Load() >= messages })
	return received.Load(), nil
}

func connect(url string) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("repro-publisher"))
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		t := c.Connect()
		t.Wait()
		if err = t.Error(); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("mosquitto did not answer: %w", err)
}

func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
