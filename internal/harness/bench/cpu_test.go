package bench

import (
	"os"
	"strings"
	"testing"
)

func TestParseStatTicks(t *testing.T) {
	// Fields after comm: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime ...
	tail := " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 9 9 20 0 4 0 12345 1000 100"
	tests := map[string]struct {
		stat    string
		want    int64
		wantErr bool
	}{
		"plain name":              {stat: "42 (redis-server)" + tail, want: 325},
		"name with spaces":        {stat: "42 (my app x)" + tail, want: 325},
		"name with parens":        {stat: "42 (a) b (c))" + tail, want: 325},
		"name looks like numbers": {stat: "42 (1 2 3 4 5 6 7 8 9 10 11 12 13)" + tail, want: 325},
		"no parens":               {stat: "42 redis" + tail, wantErr: true},
		"truncated":               {stat: "42 (x) S 1 2 3", wantErr: true},
		"not a number":            {stat: "42 (x)" + strings.Replace(tail, " 250 ", " x ", 1), wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseStatTicks(tc.stat)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ticks = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCPUOwnProcess(t *testing.T) {
	cpu := NewCPU(map[string]int{"self": os.Getpid(), "absent": 0})
	if err := cpu.Start(); err != nil {
		t.Fatal(err)
	}
	used, err := cpu.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := used["absent"]; ok {
		t.Error("a pid of 0 should be skipped")
	}
	if s, ok := used["self"]; !ok || s < 0 {
		t.Errorf("self = %v (%v), want ≥ 0", s, ok)
	}
}

func TestCPUExitedProcess(t *testing.T) {
	cpu := NewCPU(map[string]int{"gone": 1 << 30}) // above pid_max
	if err := cpu.Start(); err == nil {
		t.Error("Start should fail for a process that does not exist")
	}
}

func TestParseMachineTicks(t *testing.T) {
	busy, total, err := parseMachineTicks("cpu  100 5 50 800 20 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil || busy != 161 || total != 981 {
		t.Fatalf("parseMachineTicks = %d, %d, %v; want busy 161 (all but idle and iowait), total 981", busy, total, err)
	}
	if _, _, err := parseMachineTicks("intr 1 2 3\n"); err == nil {
		t.Fatal("a first line that is not the cpu totals: want an error")
	}
}

func TestBusyShare(t *testing.T) {
	for _, c := range []struct {
		busy, total int64
		want        float64
	}{
		{0, 0, BusyUnknown},
		{1, minBusyTicks - 1, BusyUnknown}, // too few ticks to say
		{5, minBusyTicks, 0.25},
		{200, 200, 1},
	} {
		if got := busyShare(c.busy, c.total); got != c.want {
			t.Errorf("busyShare(%d, %d) = %v, want %v", c.busy, c.total, got, c.want)
		}
	}
	rs := []Result{{Busy: BusyUnknown}, {Busy: 0.5}, {Busy: 0.7}}
	if s := busyOf(rs); s.Median != 0.6 || busyCell(s) != "60%" {
		t.Errorf("busyOf skips the unknown: %+v %q, want median 0.6, 60%%", s, busyCell(s))
	}
	if s := busyOf(rs[:1]); busyCell(s) != "–" {
		t.Errorf("busyOf of only unknown: %+v %q, want –", s, busyCell(s))
	}
}

func TestReceivedID(t *testing.T) {
	if id, ok := receivedID(`Received message: {"id": 42, "message": "Hello from publisher - message 42"}`); !ok || id != 42 {
		t.Fatalf("receivedID = %d, %v; want 42", id, ok)
	}
	for _, line := range []string{`Received message: {"id": x, "message": "m"}`, `{"level":"INFO","msg":"Received message"}`, `Received message: {"id": 7}`} {
		if _, ok := receivedID(line); ok {
			t.Errorf("receivedID(%q): want not a delivery", line)
		}
	}
}
