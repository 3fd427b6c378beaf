// Package docs holds the project's documentation; its test keeps the
// README and these pages linked and within their bounds.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// readmeMaxLines is the README's bound: a front door, with the depth here.
const readmeMaxLines = 300

// pages returns README.md and every docs/*.md, as paths from docs/.
func pages(t *testing.T) []string {
	md, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md"}, md...)
}

// TestLinksResolve checks every relative link of the README and docs/:
// the file exists, and an anchor names a heading of it (GitHub's rule).
func TestLinksResolve(t *testing.T) {
	n := 0
	for _, page := range pages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links(string(b)) {
			if regexp.MustCompile(`^[a-z]+:`).MatchString(l.target) {
				continue // http:, https:, mailto:
			}
			n++
			path, anchor, _ := strings.Cut(l.target, "#")
			target := page
			if path != "" {
				target = filepath.Join(filepath.Dir(page), path)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s:%d: %s: no such file", page, l.line, l.target)
				continue
			}
			if anchor == "" {
				continue
			}
			tb, err := os.ReadFile(target)
			if err != nil || !strings.HasSuffix(target, ".md") {
				t.Errorf("%s:%d: %s: an anchor into a file that is not markdown", page, l.line, l.target)
				continue
			}
			if !headings(string(tb))[anchor] {
				t.Errorf("%s:%d: %s: %s has no heading #%s", page, l.line, l.target, target, anchor)
			}
		}
	}
	if n < 100 {
		t.Errorf("found only %d relative links: the link reader is broken", n)
	}
}

// TestReadmeIsAFrontDoor keeps the README short and every page of docs/
// reachable from it through the index.
func TestReadmeIsAFrontDoor(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, more than %d: move the depth to docs/", n, readmeMaxLines)
	}
	if !strings.Contains(string(b), "(docs/README.md)") {
		t.Error("README.md does not link the docs index, docs/README.md")
	}
	index, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages(t)[1:] {
		if page != "README.md" && !strings.Contains(string(index), "("+page+")") {
			t.Errorf("docs/README.md does not link %s", page)
		}
	}
}

type link struct {
	line   int
	target string
}

var (
	fence    = regexp.MustCompile("(?m)^\\s*```.*$")
	codeSpan = regexp.MustCompile("`[^`]*`")
	mdLink   = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)
)

// links returns the markdown links outside code blocks and code spans.
func links(md string) []link {
	lines := strings.Split(md, "\n")
	in := false
	for i, l := range lines {
		if fence.MatchString(l) {
			in = !in
			lines[i] = ""
		} else if in {
			lines[i] = ""
		}
	}
	text := strings.Join(lines, "\n")
	// Blank code spans, keeping newlines so line numbers hold.
	text = codeSpan.ReplaceAllStringFunc(text, func(s string) string {
		return regexp.MustCompile(`[^\n]`).ReplaceAllString(s, "x")
	})
	var out []link
	for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
		out = append(out, link{line: strings.Count(text[:m[0]], "\n") + 1, target: text[m[2]:m[3]]})
	}
	return out
}

var heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)

// headings returns the anchors of md's headings as GitHub makes them:
// lower case, punctuation but hyphens dropped, spaces to hyphens, and
// -1, -2… after repeats.
func headings(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	in := false
	for _, l := range strings.Split(md, "\n") {
		if fence.MatchString(l) {
			in = !in
			continue
		}
		m := heading.FindStringSubmatch(l)
		if in || m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var (
	linkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
	notSlug  = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

func slug(h string) string {
	h = linkText.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), "$1")
	return strings.ReplaceAll(notSlug.ReplaceAllString(h, ""), " ", "-")
}

func TestSlug(t *testing.T) {
	for h, want := range map[string]string{
		"On a real cluster here: make k8s-up, k8s-run, k8s-test": "on-a-real-cluster-here-make-k8s-up-k8s-run-k8s-test",
		"Soak: the subscriber app restarted 500 times":           "soak-the-subscriber-app-restarted-500-times",
		"The workaround's own defect: an idle stream's read":     "the-workarounds-own-defect-an-idle-streams-read",
		"`make run` and [links](x.md)":                           "make-run-and-links",
	} {
		if got := slug(h); got != want {
			t.Errorf("slug(%q) = %q, want %q", h, got, want)
		}
	}
}
