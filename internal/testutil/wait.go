package testutil

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Eventually polls ok every tick until it holds, and fails t (naming what
// it waited for) when limit passes first. It is how a test waits for
// readiness: never a fixed sleep.
func Eventually(t testing.TB, limit, tick time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %s", what, limit)
		}
		time.Sleep(tick)
	}
}

// EnvInt is the environment variable name as a whole number ≥ 1, def when
// it is unset; any other value fails t with what it wants.
func EnvInt(t testing.TB, name string, def int) int {
	return Env(t, name, def, "a whole number ≥ 1", func(v string) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= 1
	})
}

// EnvDuration is the environment variable name as a duration ≥ 0 (1s,
// 250ms), def when it is unset; any other value fails t.
func EnvDuration(t testing.TB, name string, def time.Duration) time.Duration {
	return Env(t, name, def, "a duration such as 1s", func(v string) (time.Duration, bool) {
		d, err := time.ParseDuration(v)
		return d, err == nil && d >= 0
	})
}

// Env is the environment variable name parsed by parse, def when it is
// unset; a value that does not parse fails t with want, what it wants.
func Env[T any](t testing.TB, name string, def T, want string, parse func(string) (T, bool)) T {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	x, ok := parse(v)
	if !ok {
		t.Fatalf("%s=%q: want %s", name, v, want)
	}
	return x
}
