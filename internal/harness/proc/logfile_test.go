package proc

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestLogFileShowsProblemsWhileArmed(t *testing.T) {
	var console bytes.Buffer
	path := filepath.Join(t.TempDir(), "broker.log")
	l, err := OpenLogFile(path, &console, BrokerProblem)
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

func TestProblemLines(t *testing.T) {
	for _, c := range []struct {
		re      *regexp.Regexp
		line    string
		problem bool
	}{
		{DaprdProblem, `[daprd-subscriber] time="2026-12-04T15:20:01Z" level=error msg="error retrieving pending Redis messages: EOF"`, true},
		{DaprdProblem, `[daprd-subscriber] time="2026-12-04T15:20:01Z" level=fatal msg="failed to start"`, true},
		{DaprdProblem, `[daprd-subscriber] time="2026-12-04T15:20:01Z" level=warning msg="mTLS is disabled"`, false},
		{DaprdProblem, `[daprd-subscriber] time="2026-12-04T15:20:01Z" level=info msg="retrying after error"`, false},
		{RedisProblem, `[redis] 20615:M 04 Dec 2026 15:16:02.057 # WARNING Memory overcommit must be enabled!`, true},
		{RedisProblem, `[redis] 20615:M 04 Dec 2026 15:16:02.057 # Error accepting a client connection`, true},
		{RedisProblem, `[redis] 20615:M 04 Dec 2026 15:16:02.057 # Can't open the append-only file: Permission denied`, true},
		{RedisProblem, `[redis] 20615:C 04 Dec 2026 15:16:02.044 # Configuration loaded`, false},
		{RedisProblem, `[redis] 20615:M 04 Dec 2026 15:16:02.198 # User requested shutdown...`, false},
		{RedisProblem, `[redis] 20615:M 04 Dec 2026 15:16:02.058 * Ready to accept connections`, false},
		{RedisProblem, `WARNING: the embedded Redis keeps nothing after exit and is for trying the system out, not for production.`, true},
	} {
		if got := c.re.MatchString(c.line); got != c.problem {
			t.Errorf("%s on %q: %v, want %v", c.re, c.line, got, c.problem)
		}
	}
}
