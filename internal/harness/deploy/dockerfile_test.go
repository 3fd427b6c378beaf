package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"dapr-pub-sub/internal/subscriber"
)

// The images: one per command, each built by the Dockerfile at the root
// with --build-arg APP=<app>.
var apps = []string{"publisher", "subscriber", "deadletters", "retention"}

const (
	builderImage = "golang:1.26"
	runtimeImage = "gcr.io/distroless/static-debian12:nonroot"
	// nonroot:nonroot in distroless's /etc/passwd and /etc/group, by number
	// so that the kubelet can check runAsNonRoot against the image.
	nonrootUser = "65532:65532"
	// appPkg is the package the go build builds: the command APP names.
	appPkg = "./cmd/${APP}"
	// appBin is where every image has its binary, and its entrypoint.
	appBin = "/app"
)

// repoRoot is the main module's directory: the Docker build context.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module dapr-pub-sub\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod of module dapr-pub-sub above the working directory")
		}
		dir = parent
	}
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Line int    // where it starts, 1-based
	Cmd  string // upper case: FROM, RUN, ...
	Args string // the rest, as written
}

// stage is the instructions from one FROM up to the next.
type stage struct {
	Platform    string // FROM --platform=...
	Image, Name string
	Body        []instruction // after FROM
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank
// lines dropped, lines ending in a backslash joined with the next (as the
// default escape character does).
func parseDockerfile(r io.Reader) ([]instruction, error) {
	var out []instruction
	var cur *instruction
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction is dropped too
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSpace(strings.TrimSuffix(line, `\`))
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{Line: n, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		} else {
			cur.Args = strings.TrimSpace(cur.Args + " " + line)
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: the last instruction ends in a line continuation", cur.Line)
	}
	return out, sc.Err()
}

// stages groups instructions by FROM. Instructions before the first FROM
// (only ARG may stand there) are returned as the first stage with no image.
func stages(ins []instruction) ([]stage, error) {
	var out []stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			var s stage
			if len(f) > 0 && strings.HasPrefix(f[0], "--platform=") {
				s.Platform, f = strings.TrimPrefix(f[0], "--platform="), f[1:]
			}
			switch {
			case len(f) == 1:
				s.Image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				s.Image, s.Name = f[0], f[2]
			default:
				return nil, fmt.Errorf("line %d: FROM %s: want [--platform=P] IMAGE [AS NAME]", in.Line, in.Args)
			}
			out = append(out, s)
			continue
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
		}
		out[len(out)-1].Body = append(out[len(out)-1].Body, in)
	}
	return out, nil
}

// shellWords splits a command line as sh would for the simple forms a
// Dockerfile's RUN uses here: words separated by blanks, single and double
// quotes removed, backslash escapes outside single quotes. Variables are
// left as written.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`, s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case strings.IndexByte(";&|<>()`", c) >= 0:
			return nil, fmt.Errorf("shell operator %q: keep the go build RUN a single plain command", c)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

var envAssign = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// goBuild is the go build command of a RUN line.
type goBuild struct {
	Env    []string // NAME=value assignments before "go", as written
	Args   []string // after "go build"
	Output string   // the -o path
	Pkg    string   // the package built
}

func parseGoBuild(run string) (goBuild, error) {
	words, err := shellWords(run)
	if err != nil {
		return goBuild{}, err
	}
	var b goBuild
	for len(words) > 0 && envAssign.MatchString(words[0]) {
		b.Env, words = append(b.Env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return goBuild{}, fmt.Errorf("not a go build command: %q", run)
	}
	b.Args = words[2:]
	for i := 0; i < len(b.Args); i++ {
		a := b.Args[i]
		switch {
		case a == "-o" && i+1 < len(b.Args):
			b.Output = b.Args[i+1]
			i++
		case strings.HasPrefix(a, "-o="):
			b.Output = strings.TrimPrefix(a, "-o=")
		case !strings.HasPrefix(a, "-"):
			if b.Pkg != "" {
				return goBuild{}, fmt.Errorf("more than one package: %s and %s", b.Pkg, a)
			}
			b.Pkg = a
		}
	}
	if b.Output == "" || b.Pkg == "" {
		return goBuild{}, fmt.Errorf("go build without -o or a package: %q", run)
	}
	return b, nil
}

// dockerfile is what the tests need of the apps' Dockerfile.
type dockerfile struct {
	Build, Final stage
	GoBuild      goBuild
	// Apps is what the builder stage's check of APP accepts (its case
	// pattern), in order, and AppCheck that RUN line's command.
	Apps     []string
	AppCheck string
}

// appCase is the builder's check of the build argument: a case statement
// that accepts the apps and fails with how to build otherwise.
var appCase = regexp.MustCompile(`^case "\$\{APP\}" in ([a-z|]+)\) ;; \*\) echo .*--build-arg APP=.*exit 1 ;; esac$`)

// parseAppDockerfile reads the apps' Dockerfile: two stages, one go build
// in the first.
func parseAppDockerfile(src []byte) (dockerfile, error) {
	ins, err := parseDockerfile(bytes.NewReader(src))
	if err != nil {
		return dockerfile{}, err
	}
	st, err := stages(ins)
	if err != nil {
		return dockerfile{}, err
	}
	if len(st) != 2 {
		return dockerfile{}, fmt.Errorf("%d stages, want 2: the builder, then the runtime image", len(st))
	}
	d := dockerfile{Build: st[0], Final: st[1]}
	var runs []instruction
	for _, in := range d.Build.Body {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			runs = append(runs, in)
		}
	}
	if len(runs) != 1 {
		return dockerfile{}, fmt.Errorf("%d RUN lines with go build in the builder stage, want 1", len(runs))
	}
	if d.GoBuild, err = parseGoBuild(runs[0].Args); err != nil {
		return dockerfile{}, fmt.Errorf("line %d: %w", runs[0].Line, err)
	}
	for _, in := range d.Build.Body {
		if m := appCase.FindStringSubmatch(in.Args); in.Cmd == "RUN" && m != nil {
			d.Apps, d.AppCheck = strings.Split(m[1], "|"), in.Args
		}
	}
	return d, nil
}

func readDockerfile(t *testing.T, root string) dockerfile {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseAppDockerfile(src)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return d
}

// goDirective is the go line of go.mod, e.g. "1.24.6".
func goDirective(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return string(m[1])
}

// checkDockerfile returns what is wrong with the apps' Dockerfile d, for
// a module whose go line is goLine.
func checkDockerfile(d dockerfile, goLine string) problems {
	var p problems
	// The builder: golang at the go.mod's minor version (the official
	// images set GOTOOLCHAIN=local, so an older Go could not build it).
	if d.Build.Image != builderImage || d.Build.Name == "" {
		p.add("first stage is FROM %s AS %q, want FROM %s AS <name>", d.Build.Image, d.Build.Name, builderImage)
	}
	// The builder runs on the build machine's platform and cross-compiles
	// for the target's (GOOS/GOARCH from TARGETOS/TARGETARCH), so a
	// multi-platform build needs no emulation; the runtime image is the
	// target's.
	if d.Build.Platform != "$BUILDPLATFORM" || d.Final.Platform != "" {
		p.add("FROM --platform %q then %q, want $BUILDPLATFORM for the builder and none for the runtime image", d.Build.Platform, d.Final.Platform)
	}
	if tag := strings.TrimPrefix(d.Build.Image, "golang:"); goLine != tag && !strings.HasPrefix(goLine, tag+".") {
		p.add("builder %s does not match go.mod's go %s", d.Build.Image, goLine)
	}
	// The module download is its own layer, before the sources (shared by
	// the four images); the build argument is checked before the build.
	wantOrder := []string{"COPY go.mod go.sum ./", "RUN go mod download", "COPY . .", "ARG APP", "RUN case", "RUN go build"}
	var got []string
	for _, in := range d.Build.Body {
		s := in.Cmd + " " + in.Args
		for _, w := range wantOrder {
			if s == w || (w == "RUN go build" && in.Cmd == "RUN" && strings.Contains(in.Args, "go build")) ||
				(w == "RUN case" && in.Cmd == "RUN" && appCase.MatchString(in.Args)) {
				got = append(got, w)
			}
		}
	}
	if !slices.Equal(got, wantOrder) {
		p.add("builder steps %q, want %q in that order", got, wantOrder)
	}
	if !slices.Equal(d.Apps, apps) {
		p.add("the builder's check of APP accepts %q, want %q", d.Apps, apps)
	}

	// The go build: static, reproducible paths, no symbols.
	b := d.GoBuild
	for _, kv := range []string{"CGO_ENABLED=0", "GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}"} {
		if !slices.Contains(b.Env, kv) {
			p.add("go build env %q lacks %s", b.Env, kv)
		}
	}
	for _, flag := range []string{"-trimpath", "-ldflags=-s -w"} {
		if !slices.Contains(b.Args, flag) {
			p.add("go build args %q lack %q", b.Args, flag)
		}
	}
	if b.Pkg != appPkg {
		p.add("go build builds %s, want %s", b.Pkg, appPkg)
	}
	if !strings.HasPrefix(b.Output, "/") {
		p.add("go build -o %s: want an absolute path for COPY --from", b.Output)
	}

	// The runtime image: distroless, the binary from the builder, the
	// nonroot user by number, the binary as the entrypoint.
	if d.Final.Image != runtimeImage {
		p.add("final stage is FROM %s, want %s", d.Final.Image, runtimeImage)
	}
	var copies []string
	var user, entrypoint string
	env := map[string]string{}
	for _, in := range d.Final.Body {
		switch in.Cmd {
		case "COPY":
			copies = append(copies, in.Args)
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entrypoint = in.Args
		case "EXPOSE":
			p.add("line %d: EXPOSE in the image of every app (the ports differ by app: the manifests name them)", in.Line)
		case "ENV":
			k, v, ok := strings.Cut(in.Args, "=")
			if !ok || strings.ContainsAny(v, " \"'") {
				p.add("line %d: write ENV as one NAME=value", in.Line)
			}
			env[k] = v
		case "LABEL":
		default:
			p.add("line %d: %s in the runtime stage (distroless has no shell to RUN)", in.Line, in.Cmd)
		}
	}
	bin := appBin
	if want := fmt.Sprintf("--from=%s %s %s", d.Build.Name, b.Output, bin); len(copies) != 1 || copies[0] != want {
		p.add("runtime stage COPY %q, want exactly COPY %s", copies, want)
	}
	if user != nonrootUser {
		p.add("USER %q, want %s (distroless nonroot:nonroot, by number for runAsNonRoot)", user, nonrootUser)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{bin}) {
		p.add("ENTRYPOINT %s, want the exec form [%q]", entrypoint, bin)
	}

	// The subscriber listens on all interfaces in the image.
	cfg, err := subscriber.ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		p.add("the image's environment: %v", err)
	} else if cfg.Address != "0.0.0.0" {
		p.add("the image's subscriber listens on %s, want 0.0.0.0 (ENV APP_ADDRESS)", cfg.Address)
	}
	return p
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	for _, err := range checkDockerfile(readDockerfile(t, root), goDirective(t, root)) {
		t.Error(err)
	}
}

// TestDockerfileChecksCatchMistakes changes one line of the Dockerfile at
// a time and expects the checks to name it.
func TestDockerfileChecksCatchMistakes(t *testing.T) {
	root := repoRoot(t)
	goLine := goDirective(t, root)
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ old, new, want string }{
		{"USER 65532:65532", "USER nonroot:nonroot", "USER"},
		{"USER 65532:65532", "", "USER"},
		{"CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"GOARCH=${TARGETARCH} ", "", "GOARCH"},
		{` -ldflags="-s -w"`, "", "-ldflags"},
		{" -trimpath", "", "-trimpath"},
		{"FROM gcr.io/distroless/static-debian12:nonroot", "FROM gcr.io/distroless/static-debian12", "final stage"},
		{"FROM --platform=$BUILDPLATFORM " + builderImage, "FROM --platform=$BUILDPLATFORM golang:1.19", "builder"},
		{"FROM --platform=$BUILDPLATFORM " + builderImage, "FROM " + builderImage, "--platform"},
		{"COPY --from=build /out/app /app", "COPY --from=build /out/publisher /app", "COPY"},
		{`ENTRYPOINT ["/app"]`, "ENTRYPOINT /app", "ENTRYPOINT"},
		{"USER 65532:65532", "EXPOSE 8001\nUSER 65532:65532", "EXPOSE"},
		{"ENV APP_ADDRESS=0.0.0.0\n", "", "0.0.0.0"},
		{"./cmd/${APP}", "./cmd/subscriber", "./cmd/${APP}"},
		{"publisher|subscriber|deadletters|retention)", "publisher|subscriber)", "accepts"},
		{"ARG APP\n", "", "builder steps"},
		{"COPY go.mod go.sum ./\nRUN go mod download\n", "", "builder steps"},
		{"USER 65532:65532", "RUN true\nUSER 65532:65532", "runtime stage"},
	} {
		t.Run(fmt.Sprintf("%d %s", i, c.want), func(t *testing.T) {
			bad := strings.Replace(string(src), c.old, c.new, 1)
			if bad == string(src) {
				t.Fatalf("%q is not in the Dockerfile", c.old)
			}
			d, err := parseAppDockerfile([]byte(bad))
			if err != nil {
				t.Fatal(err)
			}
			ps := checkDockerfile(d, goLine)
			for _, p := range ps {
				if strings.Contains(p.Error(), c.want) {
					t.Log(p)
					return
				}
			}
			t.Errorf("no problem mentions %q; got %v", c.want, ps)
		})
	}
	// And the go build line is read as sh would.
	b, err := parseGoBuild(`CGO_ENABLED=0 GOOS=${TARGETOS} go build -trimpath -ldflags="-s -w" -o /out/x ./cmd/x`)
	if err != nil || !slices.Equal(b.Env, []string{"CGO_ENABLED=0", "GOOS=${TARGETOS}"}) || b.Output != "/out/x" || b.Pkg != "./cmd/x" ||
		!slices.Contains(b.Args, "-ldflags=-s -w") {
		t.Errorf("parseGoBuild: %+v, %v", b, err)
	}
	if _, err := parseGoBuild(`go build -o /out/x ./cmd/x && rm -rf /`); err == nil {
		t.Error("parseGoBuild took a compound command")
	}
}

// TestDockerfileAppCheck runs the builder's check of APP in sh: each app
// passes; none, or another, fails with how to build.
func TestDockerfileAppCheck(t *testing.T) {
	d := readDockerfile(t, repoRoot(t))
	for _, app := range append([]string{"", "cmd", "launcher"}, apps...) {
		c := exec.Command("sh", "-c", d.AppCheck)
		c.Env = []string{"APP=" + app}
		out, err := c.CombinedOutput()
		if ok := slices.Contains(apps, app); ok != (err == nil) || !ok && !strings.Contains(string(out), "--build-arg APP=") {
			t.Errorf("APP=%q: %v %s", app, err, out)
		}
	}
}

// TestDockerfileBuilds runs the Dockerfile's go build line for each app,
// with its environment, in a copy of the build context that .dockerignore
// leaves, and checks that the binary is static, stripped, built with the
// flags, and runs.
func TestDockerfileBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds each app's binary with -trimpath: make test runs it, make unit (-short) does not")
	}
	root := repoRoot(t)
	ctxDir := filepath.Join(t.TempDir(), "src") // WORKDIR /src, then COPY . .
	ignore, err := readDockerignore(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	if err := copyContext(root, ctxDir, ignore); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".git", "tools", "deploy", ".run", "bin"} {
		if _, err := os.Stat(filepath.Join(ctxDir, p)); err == nil {
			t.Errorf("the build context has %s: .dockerignore should leave it out", p)
		}
	}
	d := readDockerfile(t, root)
	for _, app := range apps {
		t.Run(app, func(t *testing.T) {
			t.Parallel()
			b := d.GoBuild
			out := filepath.Join(t.TempDir(), "out")
			bin := filepath.Join(out, filepath.Base(b.Output))

			// The RUN line as written, with the -o path moved into out, APP
			// set to the app and the platform ARGs as BuildKit would set them
			// for this machine.
			args := append([]string{"build"}, b.Args...)
			for i, a := range args {
				switch a {
				case b.Output:
					args[i] = bin
				case appPkg:
					args[i] = "./cmd/" + app
				}
			}
			// GOFLAGS and GOWORK as in the golang image: unset.
			env := append(os.Environ(), "GOFLAGS=", "GOWORK=off")
			for _, kv := range b.Env {
				env = append(env, os.Expand(kv, func(name string) string {
					switch name {
					case "TARGETOS":
						return "linux"
					case "TARGETARCH":
						return runtime.GOARCH
					}
					t.Fatalf("go build env %s uses $%s, which the test does not know", kv, name)
					return ""
				}))
			}
			cmd := exec.Command("go", args...)
			cmd.Dir, cmd.Env = ctxDir, env
			if outb, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, outb)
			}

			for _, err := range checkStatic(bin) {
				t.Error(err)
			}
			info, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			// (With -trimpath go records no -ldflags: checkStatic checks -s -w.)
			for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux"} {
				if settings[k] != v {
					t.Errorf("built with %s=%q, want %q", k, settings[k], v)
				}
			}
			if runtime.GOOS == "linux" {
				// It runs on its own: -h prints the usage and exits 0.
				c := exec.Command(bin, "-h")
				c.Env = []string{}      // distroless sets no variables of ours
				flag := "-dapr-address" // where its sidecar is; the keeper talks to Redis
				if app == "retention" {
					flag = "-redis-addr"
				}
				if outb, err := c.CombinedOutput(); err != nil || !strings.Contains(string(outb), flag) {
					t.Errorf("%s -h: %v\n%s", app, err, outb)
				}
			}
		})
	}
}

// checkStatic fails unless path is an ELF executable with no interpreter
// and no shared libraries, and with no symbol table (-s) nor DWARF (-w).
func checkStatic(path string) problems {
	var p problems
	f, err := elf.Open(path)
	if err != nil {
		p.add("%v", err)
		return p
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		p.add("ELF type %s, want ET_EXEC (a static, non-PIE executable)", f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			p.add("has a PT_INTERP program header: dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil {
		p.add("reading DT_NEEDED: %v", err)
	} else if len(libs) > 0 {
		p.add("needs shared libraries %q", libs)
	}
	if needed, err := f.DynValue(elf.DT_NEEDED); err != nil {
		p.add("reading the dynamic section: %v", err)
	} else if len(needed) > 0 {
		p.add("has %d DT_NEEDED entries", len(needed))
	}
	if _, err := f.Symbols(); !errors.Is(err, elf.ErrNoSymbols) {
		p.add("has a symbol table (err %v): -ldflags=-s did not apply", err)
	}
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			p.add("has DWARF section %s: -ldflags=-w did not apply", s.Name)
		}
	}
	return p
}

// dockerignore is the rules of a .dockerignore file, in order.
type dockerignore []ignoreRule

type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// readDockerignore reads the rules as Docker does for the patterns used
// here: comments and blank lines skipped, "!" negates, a leading "/" is the
// root, "**" spans directories, "*" and "?" stay within one.
func readDockerignore(path string) (dockerignore, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rules dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if strings.HasPrefix(line, "!") {
			r.negate, line = true, strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			case c == '[' || c == '\\':
				return nil, fmt.Errorf("%s: pattern %q: character classes and escapes are not supported by this test", path, line)
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		r.re = regexp.MustCompile(re.String())
		rules = append(rules, r)
	}
	return rules, nil
}

// excluded reports whether rel (slash-separated, relative to the context)
// is left out: the last rule matching it or one of its parent directories
// decides.
func (d dockerignore) excluded(rel string) bool {
	out := false
	for _, r := range d {
		p := rel
		for {
			if r.re.MatchString(p) {
				out = !r.negate
				break
			}
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
		}
	}
	return out
}

// copyContext copies the regular files of root that the rules leave into dst.
func copyContext(root, dst string, ignore dockerignore) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		if ignore.excluded(filepath.ToSlash(rel)) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func TestDockerignoreRules(t *testing.T) {
	rules, err := readDockerignore(filepath.Join(repoRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"go.mod":                              false,
		"go.sum":                              false,
		"cmd/subscriber/main.go":              false,
		"internal/order/order.go":             false,
		"internal/order/order_test.go":        true,
		"cmd/subscriber/Dockerfile":           true,
		".git/HEAD":                           true,
		"tools/daprd/go.mod":                  true,
		"deploy/kustomization.yaml":           true,
		"README.md":                           true,
		"internal/subscriber/testdata/x":      true,
		"internal/subscriber/tools/x.go":      false, // "tools" is the root's only
		"internal/subscriber/notes.txt":       false, // "*.txt" too
		"internal/harness/system/system.go":   true,  // no image runs the harness
		"internal/harness/e2e/x.txt":          true,
		"internal/subscriber/a_test.go/x":     true,
		"internal/subscriber/live/web/app.js": false, // embedded in the binary
		"cmd/bench/main.go":                   false, // in the context, built by no image
		"bench/results/results.md":            true,
		".golangci.yml":                       true,
	} {
		if got := rules.excluded(path); got != want {
			t.Errorf("excluded(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestCheckStaticCatchesADynamicBinary: a cgo build (which links libc
// dynamically) and an unstripped one fail checkStatic.
func TestCheckStaticCatchesADynamicBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary with cgo: make test runs it, make unit (-short) does not")
	}
	if runtime.GOOS != "linux" {
		t.Skip("ELF only")
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Fatalf("this test builds a cgo binary and needs a C compiler (%s): apt-get install -y gcc", cc)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\n// int one(void) { return 1; }\nimport \"C\"\n\nfunc main() { _ = C.one() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dynamic")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	got := fmt.Sprint(checkStatic(bin))
	for _, want := range []string{"PT_INTERP", "DT_NEEDED", "symbol table", "DWARF"} {
		if !strings.Contains(got, want) {
			t.Errorf("checkStatic of a cgo, unstripped binary does not mention %s: %s", want, got)
		}
	}
}
