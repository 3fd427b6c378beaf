package proc

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

func TestEmbeddedBrokerAnswersAndStops(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	b, err := StartRedis(t.Context(), RedisOptions{Source: RedisEmbedded, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := ping(addr, ""); err != nil {
		t.Fatalf("embedded broker does not answer PING: %v", err)
	}
	// auto mode finds the Redis that now answers and leaves it alone.
	again, err := StartRedis(t.Context(), RedisOptions{Addr: addr})
	if err != nil || again.Source != RedisExisting {
		t.Fatalf("auto mode with a Redis present = %+v, %v; want RedisExisting", again, err)
	}
	again.Stop()
	if err := ping(addr, ""); err != nil {
		t.Fatalf("stopping an existing broker must not stop it: %v", err)
	}
	b.Stop()
	if err := ping(addr, ""); err == nil {
		t.Fatal("embedded broker still answers after Stop")
	}
}

func TestBrokerErrorsNameTheFix(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	_, err = StartRedis(context.Background(), RedisOptions{Source: RedisExisting, Addr: addr})
	if err == nil || !strings.Contains(err.Error(), "no Redis answers") {
		t.Fatalf("existing mode with nothing there = %v", err)
	}
	_, err = StartRedis(context.Background(), RedisOptions{Source: "kafka", Addr: addr})
	if err == nil || !strings.Contains(err.Error(), "unknown Redis source") {
		t.Fatalf("unknown mode = %v", err)
	}
	// Something that is not Redis holds the port.
	l, err := listenLoopback(port)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) // the client may already be gone
			c.Close()
		}
	}()
	_, err = StartRedis(context.Background(), RedisOptions{Addr: addr})
	if err == nil || !strings.Contains(err.Error(), "not a usable Redis") {
		t.Fatalf("auto mode with a non-Redis on the port = %v", err)
	}
}

func TestRuntimeVersionIsReadFromTheToolModule(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := RuntimeVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v, "1.") || strings.HasPrefix(v, "v") {
		t.Fatalf("RuntimeVersion = %q, want a bare version such as 1.16.5", v)
	}
}
