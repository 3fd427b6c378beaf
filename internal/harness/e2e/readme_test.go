package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/order"
)

// TestReadmeQuickStart does what README.md's quick start says, as written:
// it runs its `make run` in a terminal (a pty, through util-linux's script),
// finds the output the README shows, watches the run stay quiet for an idle
// minute, runs each later command block verbatim in the checkout and finds
// what the README says comes of it, and ends the run with Ctrl-C. A README
// edit that breaks a command, or a change that breaks the README's promise,
// fails here.
//
// It runs on the README's ports (3500, 3501, 8001, 8002, 6379), which no
// other test uses, with a redis-server of its own on 6379 (REDIS_MODE), so
// a Redis already there or a `make run` still running fails it at once with
// the launcher's message.
func TestReadmeQuickStart(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatal("the quick-start test runs `make run` in a terminal with util-linux's script: apt-get install -y bsdutils")
	}
	steps := quickStart(t, readmeSection(t, "Quick start"))
	if len(steps) < 4 || steps[0].cmds[0] != "make run" {
		t.Fatalf("the quick start should begin with `make run` and go on with commands to paste; found %d steps: %+v", len(steps), steps)
	}

	term := startInTerminal(t, "make run", "REDIS_MODE=redis-server")
	// The first build of the apps and daprd's start-up take a while.
	term.expect(t, steps[0].want, 0, 5*time.Minute)
	settled := term.len()

	// A healthy run is quiet: an idle minute after the original example's flow, and
	// everything before it, has no ERROR or WARN line of any process that
	// the allow-list does not explain.
	idle := time.Minute
	deadline := time.Now().Add(idle)
	for time.Now().Before(deadline) {
		if term.exited() {
			t.Fatalf("make run ended during the idle minute:\n%s", term.text(settled))
		}
		time.Sleep(time.Second) // watching the run for a minute is the point
	}
	for _, line := range noisyLines(term.lines(0)) {
		t.Errorf("an unexplained ERROR/WARN line in a healthy run: %s", line)
	}

	for _, st := range steps[1:] {
		from := term.len()
		var out string
		for _, c := range st.cmds {
			out = runPasted(t, c)
		}
		switch {
		case len(st.want) == 0:
		case inTerminal(st.want):
			term.expect(t, st.want, from, time.Minute)
		default:
			// What a command prints may need a moment to exist (a dead
			// letter is stored after the publish returns): run the
			// block's last command again until it shows.
			last := st.cmds[len(st.cmds)-1]
			end := time.Now().Add(30 * time.Second)
			for !matchesAll(st.want, strings.Split(out, "\n")) {
				if time.Now().After(end) {
					t.Fatalf("`%s` printed:\n%s\nthe README says:\n%s", last, out, strings.Join(st.want, "\n"))
				}
				time.Sleep(500 * time.Millisecond)
				out = runPasted(t, last)
			}
		}
	}

	// Ctrl-C stops everything and says what it folded.
	start := term.started
	term.interrupt(t)
	if !term.has("==> Stopping") {
		t.Error("Ctrl-C: no `==> Stopping`")
	}
	folded := regexp.MustCompile(`Known daprd lines folded: (\d+) × ` + regexp.QuoteMeta(proc.IdleReadTimeout.Name)).FindStringSubmatch(term.text(0))
	if folded != nil {
		// Two idle streams (orders, orders-deadletter), one read each per
		// readTimeout (2 s) at most: more means something else matched.
		n, _ := strconv.Atoi(folded[1])
		if most := int(time.Since(start).Seconds()) + 4; n > most {
			t.Errorf("folded %d idle-read lines in a %s run, more than two idle streams at one read per 2 s (%d): the fold hides something else", n, time.Since(start).Round(time.Second), most)
		}
	}
	for _, f := range []string{"dapr-api-token", "publisher-grpc-port"} {
		if _, err := os.Stat(filepath.Join(root, ".run", f)); err == nil {
			t.Errorf(".run/%s is left after Ctrl-C", f)
		}
	}
	for _, p := range []int{3500, 3501, 8001, 8002, 6379} {
		if err := proc.CheckPortFree(p, "", ""); err != nil {
			t.Errorf("after Ctrl-C: %v", err)
		}
	}
}

// quietAllowed are the ERROR/WARN lines a healthy `make run` may print,
// each with the reason it does not stand for a problem. daprd's own known
// line (proc.KnownDaprLines) is folded by the launcher before it gets
// here, and so is not listed.
var quietAllowed = []struct {
	match *regexp.Regexp
	why   string
}{
	{regexp.MustCompile(`^\[redis\] .* # (oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo|Redis version=|Configuration loaded|Server initialized)`),
		"redis-server logs its start-up at its warning level (#) by design"},
	{regexp.MustCompile(`^\[redis\] .* # WARNING Memory overcommit must be enabled`),
		"the host's vm.overcommit_memory is 0: Redis's advice for hosts that run it in production; the run's Redis is temporary (a sysctl the launcher does not change)"},
}

// noisy matches a line at ERROR or WARN level in the formats of the run's
// processes: daprd (level=error), the apps (slog text or JSON), Redis (#,
// its warning level), and the launcher's own WARNING lines.
var noisy = regexp.MustCompile(`(?i)\blevel=(error|warn|warning|fatal)\b|"level":"(error|warn|warning|fatal)"|^\[redis\] \d+:[A-Z] [^#*]* # |WARNING`)

// noisyLines returns the ERROR/WARN lines of lines that quietAllowed does
// not explain.
func noisyLines(lines []string) []string {
	var out []string
next:
	for _, l := range lines {
		if !noisy.MatchString(l) {
			continue
		}
		for _, a := range quietAllowed {
			if a.match.MatchString(l) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func TestNoisyLines(t *testing.T) {
	for name, tc := range map[string]struct {
		line  string
		noisy bool
	}{
		"daprd error":           {`[daprd-subscriber] time="2026-12-04T15:20:01Z" level=error msg="error retrieving pending Redis messages: EOF"`, true},
		"daprd info":            {`[daprd-subscriber] time="2026-12-04T15:20:01Z" level=info msg="app is subscribed"`, false},
		"app json warn":         {`[subscriber] {"time":"2026-12-04T15:21:40Z","level":"WARN","msg":"Conflicting duplicate"}`, true},
		"app text error":        {`[subscriber] time=2026-12-04T15:21:40Z level=ERROR msg="Dead letter"`, true},
		"app text info":         {`[subscriber] time=2026-12-04T15:21:40Z level=INFO msg="Duplicate delivery"`, false},
		"received":              {`[subscriber] Received message: {"id": 3, "message": "hi"}`, false},
		"redis start-up":        {`[redis] 20615:C 04 Dec 2026 15:16:02.044 # Configuration loaded`, false},
		"redis overcommit":      {`[redis] 20615:M 04 Dec 2026 15:16:02.057 # WARNING Memory overcommit must be enabled! Without it, …`, false},
		"redis other warning":   {`[redis] 20615:M 04 Dec 2026 15:16:02.057 # Error accepting a client connection`, true},
		"redis notice":          {`[redis] 20615:M 04 Dec 2026 15:16:02.058 * Ready to accept connections`, false},
		"launcher warning":      {`WARNING: redis-server is not installed (apt-get install redis-server); using an embedded in-memory Redis (miniredis).`, true},
		"launcher folding note": {`[daprd-subscriber] note: ` + proc.IdleReadTimeout.Why, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := len(noisyLines([]string{tc.line})) == 1; got != tc.noisy {
				t.Errorf("noisy = %v, want %v", got, tc.noisy)
			}
		})
	}
}

// step is one command block of the quick start and the output block after
// it.
type step struct {
	cmds []string // the block's command lines, as written
	want []string // the block of output that follows it
}

// quickStart reads the section's fenced blocks as steps: a bash block is
// commands, a text block right after it what they show.
func quickStart(t *testing.T, section string) []step {
	var steps []step
	for _, b := range fencedBlocks(section) {
		switch b.lang {
		case "bash":
			var cmds []string
			for _, l := range strings.Split(b.text, "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					cmds = append(cmds, strings.TrimSpace(strings.SplitN(l, "  #", 2)[0]))
				}
			}
			steps = append(steps, step{cmds: cmds})
		case "text":
			if len(steps) == 0 {
				t.Fatalf("an output block before any command:\n%s", b.text)
			}
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, strings.Split(b.text, "\n")...)
		}
	}
	return steps
}

type fenced struct{ lang, text string }

// fencedBlocks returns the ``` blocks of markdown, in order.
func fencedBlocks(markdown string) []fenced {
	var out []fenced
	var cur *fenced
	var body []string
	for _, l := range strings.Split(markdown, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur, body = &fenced{lang: strings.Fields(l + " x")[0][3:]}, nil
		case cur != nil && strings.HasPrefix(l, "```"):
			cur.text = strings.Join(body, "\n")
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body = append(body, l)
		}
	}
	return out
}

// readmeSection returns the text of README.md's "## title" section.
func readmeSection(t *testing.T, title string) string {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// inTerminal reports whether an output block is the run's terminal (every
// line from a process, "[name] …", or the launcher, "==> …").
func inTerminal(want []string) bool {
	for _, w := range want {
		if w = strings.TrimSpace(w); w != "" && w != "…" && !strings.HasPrefix(w, "[") && !strings.HasPrefix(w, "==>") && !strings.HasPrefix(w, "curl ") {
			return false
		}
	}
	return true
}

// linePattern turns a README output line into a regexp: "…" stands for any
// text, and runs of spaces for any run of spaces (tables are aligned).
func linePattern(w string) *regexp.Regexp {
	parts := strings.Split(strings.Join(strings.Fields(w), " "), "…")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(regexp.QuoteMeta(p), " ", `\s+`)
	}
	return regexp.MustCompile(`^\s*` + strings.Join(parts, ".*") + `\s*$`)
}

// matchesAll reports whether every README line of want is in lines: the
// launcher's "==>" lines in their order, the others anywhere (processes
// print side by side). A line that is only "…" stands for lines left out.
func matchesAll(want, lines []string) bool {
	next := 0 // where the next "==>" line is looked for
	for _, w := range want {
		w = strings.TrimSpace(w)
		if w == "" || w == "…" {
			continue
		}
		re := linePattern(w)
		found := -1
		from := 0
		if strings.HasPrefix(w, "==>") {
			from = next
		}
		for i := from; i < len(lines); i++ {
			if re.MatchString(strings.TrimRight(lines[i], "\r")) {
				found = i
				break
			}
		}
		if found < 0 {
			return false
		}
		if strings.HasPrefix(w, "==>") {
			next = found + 1
		}
	}
	return true
}

func TestMatchesAll(t *testing.T) {
	lines := []string{
		"==> Using daprd 1.18.0 (/root/.cache/daprd)",
		"[subscriber] Received message: {\"id\": 1}",
		"==> Publisher done.",
		"[subscriber] Received message: {\"id\": 2}",
		"EVENT ID   TOPIC   DATA",
	}
	for name, tc := range map[string]struct {
		want []string
		ok   bool
	}{
		"in order, elision":        {[]string{"==> Using daprd 1.18.0 (…)", "…", "==> Publisher done."}, true},
		"process line after ==>":   {[]string{"==> Publisher done.", `[subscriber] Received message: {"id": 1}`}, true},
		"==> out of order":         {[]string{"==> Publisher done.", "==> Using daprd …"}, false},
		"aligned table":            {[]string{"EVENT ID TOPIC DATA"}, true},
		"missing":                  {[]string{`[subscriber] Received message: {"id": 3}`}, false},
		"wildcard is not anything": {[]string{"==> Using daprd 1.16.5 (…)"}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := matchesAll(tc.want, lines); got != tc.ok {
				t.Errorf("matchesAll = %v, want %v", got, tc.ok)
			}
		})
	}
}

// runPasted runs one command line as a reader pastes it: bash, in the
// checkout. It must succeed.
func runPasted(t *testing.T, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s\n%s", line, out)
	if err != nil {
		t.Fatalf("`%s`: %v\n%s", line, err, out)
	}
	return string(out)
}

// terminal is a command running in a pty of its own, its output collected
// line by line.
type terminal struct {
	cmd     *exec.Cmd
	keys    io.WriteCloser // what is typed into the terminal
	done    chan struct{}
	started time.Time

	mu  sync.Mutex
	out []string
}

// startInTerminal runs line with bash in the checkout, in a new terminal
// (script -qefc), with env added to the test's environment.
func startInTerminal(t *testing.T, line string, env ...string) *terminal {
	cmd := exec.Command("script", "-qefc", line, "/dev/null")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	keys, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term := &terminal{cmd: cmd, keys: keys, done: make(chan struct{}), started: time.Now()}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			t.Log(l)
			term.mu.Lock()
			term.out = append(term.out, l)
			term.mu.Unlock()
		}
		_ = cmd.Wait()
		close(term.done)
	}()
	t.Cleanup(func() {
		if !term.exited() {
			term.interrupt(t)
		}
	})
	return term
}

func (m *terminal) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.out)
}

// lines returns the output lines from index from on.
func (m *terminal) lines(from int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.out[from:]...)
}

func (m *terminal) text(from int) string { return strings.Join(m.lines(from), "\n") }

func (m *terminal) has(s string) bool { return strings.Contains(m.text(0), s) }

func (m *terminal) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// expect polls until the output from line from on has every line of want
// (matchesAll), or fails after timeout or when the command ends first.
func (m *terminal) expect(t *testing.T, want []string, from int, timeout time.Duration) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !matchesAll(want, m.lines(from)) {
		if m.exited() || time.Now().After(end) {
			t.Fatalf("the README says the run shows:\n%s\nit showed:\n%s", strings.Join(want, "\n"), m.text(from))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt types Ctrl-C and waits for the command to end; after 30 s it
// kills it and fails.
func (m *terminal) interrupt(t *testing.T) {
	t.Helper()
	if _, err := m.keys.Write([]byte{3}); err != nil {
		t.Errorf("typing Ctrl-C: %v", err)
	}
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		t.Errorf("the run did not end within 30 s of Ctrl-C")
	}
	_ = m.keys.Close()
}

// TestReadmeOrderedLife does what README.md's guarantee section shows for
// the ordered mode: its `make run ORDERED=1 …` in a terminal, the output it
// shows, and — the point — every order's events printed in sequence,
// although they were published shuffled. Then Ctrl-C.
func TestReadmeOrderedLife(t *testing.T) {
	steps := quickStart(t, readmeSection(t, "The guarantee"))
	if len(steps) != 1 || len(steps[0].cmds) != 1 || !strings.HasPrefix(steps[0].cmds[0], "make run ORDERED=1") {
		t.Fatalf("the guarantee section should show one `make run ORDERED=1 …` and its output; found %+v", steps)
	}
	term := startInTerminal(t, steps[0].cmds[0], "REDIS_MODE=redis-server")
	term.expect(t, steps[0].want, 0, 5*time.Minute)
	term.expect(t, []string{"==> Publisher done. …"}, 0, time.Minute)
	// The last events may still be on their way when the publisher is
	// done: wait for all twelve lines.
	received := regexp.MustCompile(`\[subscriber\] Received message: (\{.*\})`)
	var seqs map[int64][]int64
	waitFor(t, time.Minute, "the three lives applied", func() bool {
		seqs = map[int64][]int64{}
		n := 0
		for _, l := range term.lines(0) {
			if m := received.FindStringSubmatch(l); m != nil {
				o, err := order.Decode([]byte(m[1]))
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				seqs[o.ID] = append(seqs[o.ID], o.Sequence())
				n++
			}
		}
		return n >= 12
	})
	for id, s := range seqs {
		if fmt.Sprint(s) != "[1 2 3 4]" {
			t.Errorf("order %d's events were printed as %v, want [1 2 3 4]", id, s)
		}
	}
	if held := strings.Count(term.text(0), "Held: "); held == 0 {
		t.Error("no event was held: the lives did not arrive shuffled, the run shows nothing")
	}
	for _, line := range noisyLines(term.lines(0)) {
		t.Errorf("an unexplained ERROR/WARN line in a healthy run: %s", line)
	}
	term.interrupt(t)
}
