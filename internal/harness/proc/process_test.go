package proc

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dapr-pub-sub/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

func TestProcessPrefixesOutputAndReportsExit(t *testing.T) {
	var out syncBuffer
	var seen []string
	p := &Process{Name: "echo", Path: "/bin/sh", Args: []string{"-c", "echo one; echo two >&2; exit 3"}, Out: &out,
		OnLine: func(l string) { seen = append(seen, l) }}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	err := p.Wait(t.Context())
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}
	if !strings.Contains(out.String(), "[echo] one\n") || !strings.Contains(out.String(), "[echo] two\n") {
		t.Fatalf("output = %q, want both lines prefixed", out.String())
	}
	if len(seen) != 2 || !strings.Contains(p.Tail(), "one") {
		t.Fatalf("OnLine saw %q, tail %q", seen, p.Tail())
	}
}

// TestStopEndsTheWholeProcessGroup starts a shell with a grandchild and
// checks that Stop leaves neither behind.
func TestStopEndsTheWholeProcessGroup(t *testing.T) {
	var out syncBuffer
	var grandchild int
	var mu sync.Mutex
	p := &Process{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "sleep 300 & echo $!; wait"}, Out: &out,
		OnLine: func(l string) {
			mu.Lock()
			defer mu.Unlock()
			grandchild, _ = strconv.Atoi(l)
		}}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		g := grandchild
		mu.Unlock()
		if g != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shell never printed its child's pid")
		}
	}
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("Stop returned before the process exited")
	}
	for deadline := time.Now().Add(5 * time.Second); alive(grandchild); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive after Stop", grandchild)
		}
	}
	p.Stop(time.Second) // a second Stop is harmless
}

// alive reports whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func TestCheckPortFreeNamesTheFix(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPortFree(port, "thing", "do X"); err != nil {
		t.Fatalf("free port reported busy: %v", err)
	}
	l, err := listenLoopback(port)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = CheckPortFree(port, "subscriber app", "set -app-port")
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "set -app-port") {
		t.Fatalf("CheckPortFree on a busy port = %v", err)
	}
}

func listenLoopback(port int) (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
}

func TestFreePortsAvoidTheEphemeralRangeAndEachOther(t *testing.T) {
	lo, hi := portRange()
	a, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(a, b...) {
		if p < lo || p >= hi {
			t.Errorf("port %d outside %d–%d", p, lo, hi)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice within a minute", p)
		}
		seen[p] = true
	}
}
