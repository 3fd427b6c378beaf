package proc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestBrokerLogShowsProblemsWhileArmed(t *testing.T) {
	var console bytes.Buffer
	path := filepath.Join(t.TempDir(), "broker.log")
	l, err := OpenBrokerLog(path, &console)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"[nats-n1] [ERR] Error trying to connect to route (attempt 1)\n", // start-up: file only
		"[rabbitmq] [info] <0.1.0> feature flags\n",
	}
	for _, s := range lines {
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	l.Arm()
	for _, s := range []string{
		"[rabbitmq] [info] <0.2.0> a queue declared\n",
		"[rabbitmq] [error] <0.3.0> ", "connection closed abruptly\n", // one line in two writes
		"[mosquitto] 1796588040: Error: Permission denied.\n",
		"[nats-n2] [INF] Server is ready\n",
	} {
		if _, err := l.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	l.Disarm() // the broker stops
	if _, err := l.Write([]byte("[rabbit-q3] Logger - error: \n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := "[rabbitmq] [error] <0.3.0> connection closed abruptly\n[mosquitto] 1796588040: Error: Permission denied.\n"
	if console.String() != want {
		t.Errorf("console got %q, want %q", console.String(), want)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(file, []byte("\n")) != 7 {
		t.Errorf("the file holds %d lines, want all 7:\n%s", bytes.Count(file, []byte("\n")), file)
	}
}
