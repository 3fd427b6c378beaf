package e2e

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTokensAreRequired: the sidecars' API wants DAPR_API_TOKEN, the
// subscriber's routes want APP_API_TOKEN; without them nothing is stored
// or processed.
func TestTokensAreRequired(t *testing.T) {
	s := startSystem(t)
	url := s.PubDaprd.HTTPURL() + "/v1.0/publish/pubsub/orders"
	for _, token := range []string{"", "wrong-token"} {
		if code, body := daprPost(t, url, token, "application/json", `{"id":1,"message":"m"}`); code != http.StatusUnauthorized {
			t.Errorf("publish with token %q = %d %s, want 401", token, code, body)
		}
	}
	// The subscriber's topic route, called directly, as a local intruder would.
	appURL := "http://127.0.0.1:" + strconv.Itoa(s.Sub.Port)
	event := `{"id":"forged","datacontenttype":"application/json","data":{"id":2,"message":"forged"}}`
	for _, token := range []string{"", "wrong-token"} {
		if code, body := daprPost(t, appURL+"/orders", token, "application/cloudevents+json", event); code != http.StatusUnauthorized {
			t.Errorf("POST /orders with app token %q = %d %s, want 401", token, code, body)
		}
	}
	if code, _ := daprPost(t, appURL+"/dapr/subscribe", "", "application/json", ""); code != http.StatusUnauthorized {
		t.Errorf("/dapr/subscribe without the app token = %d, want 401", code)
	}
	resp, err := http.Get(appURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 without a token", resp.StatusCode)
	}
	// The real token still works, so the refusals above were about the token.
	if code, body := s.publishHTTP("pubsub", "orders", "application/json", `{"id":3,"message":"m"}`); code != http.StatusNoContent {
		t.Fatalf("publish with the token = %d %s", code, body)
	}
	s.waitDrained(1, time.Minute)
	if n, _ := s.redis.XLen(t.Context(), "orders").Result(); n != 1 {
		t.Errorf("stream has %d entries, want only the authorised one", n)
	}
	if counts, _, _ := s.received.snapshot(); len(counts) != 1 || counts[3] != 1 {
		t.Errorf("processed %v, want only order 3", counts)
	}
}

// TestTopicScopes: only the allowed topics exist, only the publisher may
// publish orders; refusals are 403 and store nothing.
func TestTopicScopes(t *testing.T) {
	s := startSystem(t)
	if code, body := s.publishHTTP("pubsub", "payments", "application/json", `{"id":1,"message":"m"}`); code != http.StatusForbidden {
		t.Errorf("publish to a topic outside allowedTopics = %d %s, want 403", code, body)
	}
	subURL := s.Sub.Daprd.HTTPURL() + "/v1.0/publish/pubsub/orders"
	if code, body := daprPost(t, subURL, s.Secrets.APIToken, "application/json", `{"id":2,"message":"m"}`); code != http.StatusForbidden {
		t.Errorf("publish of orders by the subscriber's sidecar = %d %s, want 403", code, body)
	}
	for _, stream := range []string{"orders", "payments"} {
		if n, _ := s.redis.XLen(t.Context(), stream).Result(); n != 0 {
			t.Errorf("refused publishes left %d entries in %s", n, stream)
		}
	}
}

// TestOversizedPublishIsRefused: a body over daprd's --max-body-size is
// refused with an error, and nothing is stored.
func TestOversizedPublishIsRefused(t *testing.T) {
	s := startSystem(t)
	big := `{"id":1,"message":"` + strings.Repeat("x", 2<<20) + `"}`
	code, body := s.publishHTTP("pubsub", "orders", "application/json", big)
	// daprd 1.16 answers 500 with its publish error code and the reason.
	if code != http.StatusInternalServerError || !strings.Contains(body, "ERR_PUBSUB_PUBLISH_MESSAGE") || !strings.Contains(body, "too large") {
		t.Errorf("publish of 2 MiB = %d %.200s, want 500 ERR_PUBSUB_PUBLISH_MESSAGE ... too large", code, body)
	}
	if n, _ := s.redis.XLen(t.Context(), "orders").Result(); n != 0 {
		t.Errorf("an oversized publish left %d entries in the stream", n)
	}
}

// TestEveryPortIsOnLoopback reads the kernel's socket table: every socket
// that a process of the system listens on is bound to 127.0.0.1 or ::1.
func TestEveryPortIsOnLoopback(t *testing.T) {
	s := startSystem(t)
	listening := listeningSockets(t)
	seen := 0
	for _, p := range s.Processes() {
		for _, inode := range socketInodes(t, p.Pid()) {
			addr, ok := listening[inode]
			if !ok {
				continue
			}
			seen++
			if !addr.IP.IsLoopback() {
				t.Errorf("%s listens on %s, not on loopback", p.Name, addr)
			}
		}
	}
	// redis 1, subscriber 1, each daprd: HTTP, gRPC, internal gRPC, metrics.
	if seen < 10 {
		t.Fatalf("found %d listening sockets of the system, want at least 10: the check did not see them", seen)
	}
}

// listeningSockets maps socket inodes to their local address, for TCP
// sockets in LISTEN state, from /proc/net/tcp and tcp6.
func listeningSockets(t *testing.T) map[string]*net.TCPAddr {
	out := map[string]*net.TCPAddr{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A = LISTEN
				continue
			}
			out[fields[9]] = parseProcAddr(t, fields[1])
		}
		f.Close()
	}
	return out
}

// parseProcAddr decodes /proc/net/tcp's "0100007F:1F90" (little-endian words).
func parseProcAddr(t *testing.T, s string) *net.TCPAddr {
	hexIP, hexPort, _ := strings.Cut(s, ":")
	raw, err := hex.DecodeString(hexIP)
	if err != nil {
		t.Fatal(err)
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, _ := strconv.ParseUint(hexPort, 16, 16)
	return &net.TCPAddr{IP: ip, Port: int(port)}
}

// socketInodes lists the inodes of the sockets process pid has open.
func socketInodes(t *testing.T, pid int) []string {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	var inodes []string
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes = append(inodes, strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"))
		}
	}
	return inodes
}
