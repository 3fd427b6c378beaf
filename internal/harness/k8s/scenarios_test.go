//go:build k8s

package k8s

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/testutil"
)

// testNS is where the scenarios deploy the system.
const testNS = "k8stest"

// TestInCluster brings a cluster up (make k8s-test; root), applies deploy/
// as it is, and runs the in-cluster scenarios, each while the orders of a
// publisher pod of its own are published (K8S_ORDERS, default 1,000, at 50
// a second), a third of the way in:
//
//   - the subscriber's app container alone killed (SIGKILL through
//     containerd): the kubelet restarts it while its daprd keeps running;
//   - a subscriber pod deleted: its Deployment makes another;
//   - the subscriber Deployment scaled 1 → 3 → 1;
//   - kubectl rollout restart of the subscriber;
//   - Redis's pod deleted: its Deployment makes another on the same data.
//
// Each asserts what the fault suite asserts, read through the cluster:
// the publisher's every publish acknowledged (it exits 0); every order's
// effect — its record in the state store — written once (read in Redis's
// pod); every order printed once (the subscriber containers' "Received
// message" lines, read from the kubelet's log files, so a killed or
// deleted container's lines count) — or, only where the app container is
// killed, recorded and not printed when the kill fell between the two and
// its redelivery was logged as a duplicate (the README's "Delivery
// guarantees": the record is the effect, the line its log); nothing
// pending for the subscriber and nothing unread in the stream, no dead
// letter.
func TestInCluster(t *testing.T) {
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := &testWriter{t: t}
	bin, err := Build(t.Context(), root, out)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := Up(t.Context(), bin, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range processes {
				t.Logf("--- the end of %s's log:\n%s", p, tailFile(logFile(p), 10))
			}
			pods, _ := n.Kubectl(t.Context(), "", "get", "pods", "-A", "-o", "wide")
			t.Logf("pods:\n%s", pods)
		}
		Down(out)
	})
	if err := n.InstallAddons(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster with Dapr's control plane up in %s", time.Since(start).Round(time.Second))
	if err := n.Deploy(t.Context(), testNS); err != nil {
		t.Fatal(err)
	}
	t.Logf("deploy/ applied and rolled out %s after the start", time.Since(start).Round(time.Second))
	s := &scenarios{t: t, n: n, counts: map[int64]int{}, dups: map[int64]bool{}}
	// The scenarios publish orders of their own: the shipped publisher
	// (forever, 2 a second, from id 0) stops.
	s.kubectl("scale", "deployment/publisher", "--replicas=0")
	logs := FollowLogs(testNS, "subscriber", s.observe)
	t.Cleanup(logs.Stop)
	s.logs = logs

	var rows []string
	for i, sc := range []scenario{
		// SIGKILL can fall between an order's record and its print.
		{name: "app container killed", replicas: 2, fault: s.killAppContainer, unprinted: true},
		{name: "subscriber pod deleted", replicas: 2, fault: s.deletePod},
		{name: "scaled 1 → 3 → 1", replicas: 1, fault: s.scale},
		{name: "rollout restart", replicas: 2, fault: s.rolloutRestart},
		{name: "redis pod deleted", replicas: 2, fault: s.deleteRedis},
	} {
		t.Run(sc.name, func(t *testing.T) {
			s.t = t
			s.kubectl("scale", "deployment/subscriber", "--replicas="+strconv.Itoa(sc.replicas))
			s.kubectl("rollout", "status", "deployment/subscriber", "--timeout=3m")
			rows = append(rows, s.run(int64(i+1)*1_000_000, sc))
		})
	}
	t.Logf("\n| scenario | orders | fault took | drained after | lost | effect twice | printed twice | recorded, not printed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n%s", strings.Join(rows, "\n"))
}

// scenario is one fault run under load.
type scenario struct {
	name     string
	replicas int // the subscriber's, before the fault
	fault    func(t *testing.T)
	// unprinted: the fault may cut an order between its record and its
	// print (at most the component's concurrency, 10, in flight).
	unprinted bool
}

type scenarios struct {
	t      *testing.T
	n      *Node
	logs   *LogFollower
	mu     sync.Mutex
	counts map[int64]int  // "Received message" lines per order id
	dups   map[int64]bool // ids logged as "Duplicate delivery"
	bad    []string
}

func (s *scenarios) observe(_, line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rest, ok := strings.CutPrefix(line, "Received message: ")
	if !ok {
		var l struct {
			Msg string `json:"msg"`
			ID  int64  `json:"id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "Duplicate delivery") {
			s.dups[l.ID] = true
		}
		return
	}
	o, err := order.Decode([]byte(rest))
	if err != nil {
		s.bad = append(s.bad, line)
		return
	}
	s.counts[o.ID]++
}

// seen is how many ids in [from, from+n) were processed: printed, or
// found recorded on a redelivery.
func (s *scenarios) seen(from, n int64) int {
	s.logs.Flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := 0
	for id := from; id < from+n; id++ {
		if s.counts[id] > 0 || s.dups[id] {
			c++
		}
	}
	return c
}

func (s *scenarios) kubectl(args ...string) string {
	s.t.Helper()
	out, err := s.n.Kubectl(s.t.Context(), "", append([]string{"-n", testNS}, args...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// run publishes n orders from id base through a publisher pod of its own
// (deploy/'s publisher template, restartPolicy Never), runs sc's fault a
// third of the way in, waits for the publisher to finish and the
// subscriber to drain, and checks every order took effect once; it
// returns the table row.
func (s *scenarios) run(base int64, sc scenario) string {
	t := s.t
	n := int64(testutil.EnvInt(t, "K8S_ORDERS", 1000))
	pod := fmt.Sprintf("publish-%d", base/1_000_000)
	s.startPublisher(pod, base, n)
	defer s.kubectl("delete", "pod", pod, "--wait=false")
	testutil.Eventually(t, 3*time.Minute, 200*time.Millisecond, "a third of the orders processed", func() bool { return s.seen(base, n) >= int(n/3) })
	start := time.Now()
	sc.fault(t)
	took := time.Since(start)
	testutil.Eventually(t, 4*time.Minute, 200*time.Millisecond, "the publisher finished", func() bool {
		return s.kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="publisher")].state.terminated.reason}`) != ""
	})
	if code := s.kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="publisher")].state.terminated.exitCode}`); code != "0" {
		logs, _ := s.n.Kubectl(t.Context(), "", "-n", testNS, "logs", pod, "-c", "publisher", "--tail", "20")
		t.Fatalf("the publisher exited with %s (every publish must be acknowledged):\n%s", code, logs)
	}
	last, lastChange := -1, time.Now()
	for deadline := time.Now().Add(4 * time.Minute); ; {
		got := s.seen(base, n)
		if got != last {
			last, lastChange = got, time.Now()
		}
		if got == int(n) && s.idle() || got < int(n) && time.Since(lastChange) > time.Minute && s.idle() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained 4 min after the fault began: %d of %d processed", got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	drained := time.Since(start)
	versions := s.recordVersions(base, n)
	s.mu.Lock()
	var lost, twice, printedTwice, silent []int64 // order ids
	unprinted := 0
	for id := base; id < base+n; id++ {
		v, c := versions[id], s.counts[id]
		switch {
		case v == 0:
			lost = append(lost, id)
		case v > 1:
			twice = append(twice, id)
		}
		switch {
		case c > 1:
			printedTwice = append(printedTwice, id)
		case c == 0 && v > 0 && s.dups[id]:
			unprinted++
		case c == 0 && v > 0:
			silent = append(silent, id)
		}
	}
	for _, e := range []struct {
		ids  []int64
		what string
	}{
		{lost, "acknowledged to the publisher, and no record"},
		{twice, "the record written more than once"},
		{printedTwice, "printed more than once: the effect ran twice"},
		{silent, "recorded, but neither printed nor the redelivery logged as a duplicate"},
	} {
		if len(e.ids) > 0 {
			t.Errorf("%d orders %s: %v", len(e.ids), e.what, e.ids[:min(len(e.ids), 20)])
		}
	}
	bad := s.bad
	s.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("lines that do not decode: %q", bad)
	}
	t.Logf("%s: %d orders; the fault took %s; drained %s after it began; lost %d, effect twice %d, printed twice %d, recorded but not printed %d",
		sc.name, n, took.Round(time.Millisecond), drained.Round(time.Second), len(lost), len(twice), len(printedTwice), unprinted)
	switch {
	case unprinted > 0 && !sc.unprinted:
		t.Errorf("%d orders recorded but not printed: nothing here may cut an order between the two", unprinted)
	case unprinted > 10:
		t.Errorf("%d orders recorded but not printed; one kill can cut at most the 10 in flight", unprinted)
	}
	if dl := s.redis("XLEN", "orders-deadletter"); dl != "0\n" {
		t.Errorf("the dead-letter stream holds %q entries: want none", dl)
	}
	return fmt.Sprintf("| %s | %d | %.1f s | %.0f s | %d | %d | %d | %d |", sc.name, n, took.Seconds(), drained.Seconds(), len(lost), len(twice), len(printedTwice), unprinted)
}

// startPublisher starts pod: deploy/'s publisher Deployment's pod
// template, as the injector sees it, publishing n orders from base.
func (s *scenarios) startPublisher(pod string, base, n int64) {
	var d struct {
		Spec struct {
			Template struct {
				Metadata map[string]any `json:"metadata"`
				Spec     map[string]any `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(s.kubectl("get", "deployment", "publisher", "-o", "json")), &d); err != nil {
		s.t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	spec["restartPolicy"] = "Never"
	c := spec["containers"].([]any)[0].(map[string]any)
	set := publisherChange(s.t, c["env"].([]any), func(cfg *publisher.Config) {
		cfg.Count, cfg.Rate, cfg.StartID, cfg.Attempts = int(n), 50, base, 60
	})
	var env []any
	for _, e := range c["env"].([]any) {
		if _, ok := set[e.(map[string]any)["name"].(string)]; !ok {
			env = append(env, e)
		}
	}
	for k, v := range set {
		env = append(env, map[string]any{"name": k, "value": v})
	}
	c["env"] = env
	meta := d.Spec.Template.Metadata
	meta["name"] = pod
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.n.Kubectl(s.t.Context(), string(b), "-n", testNS, "create", "-f", "-"); err != nil {
		s.t.Fatal(err)
	}
}

// publisherChange returns the variables (name → value) that change makes
// to the publisher's settings in env, a container's env as the Deployment
// has it: the publisher's own Config reads the plain values and renders
// them before and after, so no variable is spelled here.
func publisherChange(t *testing.T, env []any, change func(*publisher.Config)) map[string]string {
	t.Helper()
	plain := map[string]string{}
	for _, e := range env {
		if v, ok := e.(map[string]any)["value"].(string); ok {
			plain[e.(map[string]any)["name"].(string)] = v
		}
	}
	cfg, err := publisher.ParseConfig(nil, func(k string) string { return plain[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the publisher's environment in deploy/: %v", err)
	}
	before := cfg.Env()
	change(&cfg)
	set := map[string]string{}
	for _, kv := range cfg.Env() {
		if !slices.Contains(before, kv) {
			k, v, _ := strings.Cut(kv, "=")
			set[k] = v
		}
	}
	return set
}

// idle reports whether Redis holds nothing for the subscriber: nothing
// pending in its group, and the group has read the stream to its end.
func (s *scenarios) idle() bool {
	pending := s.redis("XPENDING", "orders", "subscriber")
	info := s.redis("XINFO", "GROUPS", "orders")
	return strings.HasPrefix(pending, "0\n") && strings.Contains(info, "\nlag\n0\n")
}

// redis runs redis-cli in Redis's pod and returns its output ("" when it
// fails: the pod may be restarting).
func (s *scenarios) redis(args ...string) string { return s.redisCLI("", args...) }

// redisCLI is redis with stdin: commands, one a line, when args are none.
func (s *scenarios) redisCLI(stdin string, args ...string) string {
	pw := s.kubectl("get", "secret", "redis", "-o", "jsonpath={.data.redis-password}")
	pods := strings.Fields(s.kubectl("get", "pods", "-l", "app.kubernetes.io/name=redis", "--field-selector=status.phase=Running",
		"--sort-by=.metadata.creationTimestamp", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(pods) == 0 {
		return ""
	}
	out, err := s.n.Kubectl(s.t.Context(), stdin, append([]string{"-n", testNS, "exec", "-i=" + strconv.FormatBool(stdin != ""), pods[len(pods)-1], "--",
		"/usr/bin/redis-cli", "--no-auth-warning", "-a", decodeB64(pw)}, args...)...)
	if err != nil {
		return ""
	}
	return out
}

// recordVersions reads, in Redis's pod, how often the record of each order
// in [base, base+n) was written: Dapr's Redis state store keeps it as a
// hash whose "version" counts writes (0: no record).
func (s *scenarios) recordVersions(base, n int64) map[int64]int {
	// deploy/'s names: the state store component and the subscriber's
	// app id; the key is Dapr's "<store>||<key>".
	records := store.New(nil, "statestore", "subscriber")
	var cmds strings.Builder
	for id := base; id < base+n; id++ {
		fmt.Fprintf(&cmds, "HGET statestore||%s version\n", records.ProcessedKey(id))
	}
	var out []string
	testutil.Eventually(s.t, time.Minute, 200*time.Millisecond, "answer from redis-cli for every record", func() bool {
		out = strings.Split(strings.TrimSuffix(s.redisCLI(cmds.String()), "\n"), "\n")
		return int64(len(out)) == n
	})
	v := make(map[int64]int, n)
	for i, l := range out {
		v[base+int64(i)], _ = strconv.Atoi(l) // "" for no record
	}
	return v
}

func (s *scenarios) subscriberPods() []string {
	return strings.Fields(s.kubectl("get", "pods", "-l", "app.kubernetes.io/name=subscriber", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}"))
}

func (s *scenarios) killAppContainer(t *testing.T) {
	pod := s.subscriberPods()[0]
	restarts := func() string {
		return s.kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="subscriber")].restartCount}`)
	}
	before := restarts()
	id := strings.TrimPrefix(s.kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="subscriber")].containerID}`), "containerd://")
	if err := run("ctr", "--address", containerdSock(), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, "the kubelet restarted the app container", func() bool { return restarts() != before })
	s.kubectl("wait", "pod/"+pod, "--for=condition=Ready", "--timeout=2m")
}

func (s *scenarios) deletePod(t *testing.T) {
	pod := s.subscriberPods()[0]
	s.kubectl("delete", "pod", pod, "--wait=false")
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, "the deleted pod gone", func() bool {
		_, err := s.n.Kubectl(t.Context(), "", "-n", testNS, "get", "pod", pod)
		return err != nil && strings.Contains(err.Error(), "NotFound")
	})
	s.kubectl("rollout", "status", "deployment/subscriber", "--timeout=3m")
}

func (s *scenarios) scale(t *testing.T) {
	s.kubectl("scale", "deployment/subscriber", "--replicas=3")
	s.kubectl("rollout", "status", "deployment/subscriber", "--timeout=3m")
	s.kubectl("scale", "deployment/subscriber", "--replicas=1")
	s.kubectl("rollout", "status", "deployment/subscriber", "--timeout=3m")
}

func (s *scenarios) rolloutRestart(t *testing.T) {
	s.kubectl("rollout", "restart", "deployment/subscriber")
	s.kubectl("rollout", "status", "deployment/subscriber", "--timeout=3m")
}

func (s *scenarios) deleteRedis(t *testing.T) {
	old := s.kubectl("get", "pods", "-l", "app.kubernetes.io/name=redis", "-o", "jsonpath={.items[0].metadata.name}")
	s.kubectl("delete", "pod", old, "--wait=false")
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, "a new Redis pod ready", func() bool {
		ready := s.kubectl("get", "pods", "-l", "app.kubernetes.io/name=redis", "-o",
			`jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		for _, p := range strings.Fields(ready) {
			if name, st, _ := strings.Cut(p, "="); name != old && st == "True" {
				return true
			}
		}
		return false
	})
}

func decodeB64(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
