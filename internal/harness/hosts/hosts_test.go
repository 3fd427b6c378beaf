package hosts

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/testutil"
)

// TestMain is also the tests' helper inside a host: with HOSTS_TEST_LISTEN
// it serves "hi" on that address until killed; with HOSTS_TEST_DIAL it
// reads "hi" from that address and exits 0.
func TestMain(m *testing.M) {
	if addr := os.Getenv("HOSTS_TEST_LISTEN"); addr != "" {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := lis.Accept()
			if err != nil {
				os.Exit(1)
			}
			_, _ = c.Write([]byte("hi"))
			c.Close()
		}
	}
	if addr := os.Getenv("HOSTS_TEST_DIAL"); addr != "" {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(c)
		if string(b) != "hi" {
			fmt.Fprintf(os.Stderr, "read %q, want hi\n", b)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHostsReachEachOtherUntilCut: two hosts and the root namespace reach
// each other over the bridge; a cut host reaches no one, and is reached
// again once healed.
func TestHostsReachEachOtherUntilCut(t *testing.T) {
	n, err := New("t1", DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	a, err := n.Add("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Add("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr || !DefaultSubnet.Contains(a.Addr) || !DefaultSubnet.Contains(b.Addr) {
		t.Fatalf("addresses %s, %s: want two of %s", a, b, DefaultSubnet)
	}
	// A listener inside host b, reached from the root namespace and from a.
	addr := serveHi(t, b)
	reach := func() bool {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "b answers from the root namespace", reach)
	fromA := a.Command(os.Args[0], "-test.run", "^$")
	fromA.Env = append(os.Environ(), "HOSTS_TEST_DIAL="+addr)
	if out, err := fromA.CombinedOutput(); err != nil {
		t.Errorf("a cannot reach b: %v %s", err, out)
	}
	if err := b.Cut(); err != nil {
		t.Fatal(err)
	}
	if reach() {
		t.Fatal("b still answers after the cut")
	}
	if err := b.Heal(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, "b answers again after healing", reach)
}

// TestCloseRemovesEverything: after Close no namespace or link is left.
func TestCloseRemovesEverything(t *testing.T) {
	n, err := New("t2", DefaultSubnet)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := n.Add("h" + strconv.Itoa(i)); err != nil {
			n.Close()
			t.Fatal(err)
		}
	}
	n.Close()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), "dps-t2-") {
		t.Errorf("namespaces left: %s", out)
	}
	if err := exec.Command("ip", "link", "show", "br-t2").Run(); err == nil {
		t.Error("bridge br-t2 left")
	}
}

// TestNetsAtOnceGetSubnetsOfTheirOwn: two nets alive together (test
// packages run in parallel) get different /27s, and a host on each is
// reached — one bridge does not take the other's route.
func TestNetsAtOnceGetSubnetsOfTheirOwn(t *testing.T) {
	var addrs []string
	for _, name := range []string{"t3", "t4"} {
		n, err := New(name, DefaultSubnet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		h, err := n.Add("a")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, serveHi(t, h))
	}
	if addrs[0] == addrs[1] {
		t.Fatalf("both nets gave their first host %s", addrs[0])
	}
	for _, addr := range addrs {
		testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, addr+" answers", func() bool {
			c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
}

// serveHi runs this test binary inside h as a server of "hi" on port 7000
// (see TestMain) until the test ends, and returns its address.
func serveHi(t *testing.T, h *Host) string {
	t.Helper()
	addr := net.JoinHostPort(h.Addr.String(), "7000")
	srv := h.Command(os.Args[0], "-test.run", "^$")
	srv.Env = append(os.Environ(), "HOSTS_TEST_LISTEN="+addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	return addr
}
