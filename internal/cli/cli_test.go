package cli

import (
	"strings"
	"testing"
	"time"
)

func TestEnvReadsDefaultsAndRemembersTheFirstBadValue(t *testing.T) {
	vars := map[string]string{"N": "7", "ON": "true", "X": "0.5", "D": "250ms", "S": "s", "BAD_N": "seven", "BAD_D": "5"}
	e := &Env{Getenv: func(k string) string { return vars[k] }}
	if e.Int("N", 1) != 7 || !e.Bool("ON", false) || e.Float64("X", 0) != 0.5 || e.Duration("D", 0) != 250*time.Millisecond || e.Str("S", "") != "s" {
		t.Fatal("a set variable was not read")
	}
	if e.Int("UNSET", 3) != 3 || e.Str("UNSET", "d") != "d" || e.Err != nil {
		t.Fatalf("an unset variable is not its default: %v", e.Err)
	}
	if e.Int("BAD_N", 3) != 3 || e.Duration("BAD_D", time.Second) != time.Second {
		t.Error("a bad value is not the default")
	}
	if e.Err == nil || !strings.Contains(e.Err.Error(), `BAD_N="seven" is not an integer`) {
		t.Errorf("Err = %v, want the first bad value named", e.Err)
	}
}
