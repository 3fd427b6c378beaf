// Package harness is the machinery that runs the system for `make run`,
// the tests and the benchmark: processes, brokers, clusters, Kubernetes.
// No image ships it, and no product package imports it; its test checks
// those rules of the house with `go list`.
package harness

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "dapr-pub-sub/"

// pkg is what `go list -json` says of a package.
type pkg struct {
	ImportPath string
	Imports    []string // of its non-test files
	Deps       []string // every package it needs, transitively
}

func listPackages(t *testing.T) []pkg {
	cmd := exec.Command("go", "list", "-json", "dapr-pub-sub/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ps []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return ps
}

// isHarness reports whether an import path is the harness's.
func isHarness(path string) bool {
	return strings.HasPrefix(path, module+"internal/harness") || slices.Contains([]string{module + "cmd/launcher", module + "cmd/bench", module + "cmd/k8s"}, path)
}

// TestProductNeverNeedsTheHarness: no product package (internal/… outside
// internal/harness, and the commands that ship in images) depends on the
// harness, directly or through another package. Test files may.
func TestProductNeverNeedsTheHarness(t *testing.T) {
	ps := listPackages(t)
	product := 0
	for _, p := range ps {
		if isHarness(p.ImportPath) || strings.HasPrefix(p.ImportPath, module+"tools/") || strings.HasPrefix(p.ImportPath, module+"docs") {
			continue
		}
		product++
		for _, d := range p.Deps {
			if isHarness(d) {
				t.Errorf("product package %s depends on the harness package %s", p.ImportPath, d)
			}
		}
	}
	if product < 10 {
		t.Errorf("found %d product packages: the listing is broken", product)
	}
}

// TestHarnessLinksNoTestingOutsideTests: the launcher binary must not link
// package testing; its t.Cleanup helpers live beside the tests.
func TestHarnessLinksNoTestingOutsideTests(t *testing.T) {
	for _, p := range listPackages(t) {
		if !isHarness(p.ImportPath) {
			continue
		}
		if slices.Contains(p.Imports, "testing") {
			t.Errorf("%s imports testing outside its _test.go files", p.ImportPath)
		}
	}
}
