// Package cli holds what the programs share for their command lines: a flag
// set with a uniform usage text, and flag defaults read from environment
// variables.
package cli

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"
)

// NewFlagSet returns a flag set that reports errors instead of exiting and
// prints "Usage: name [flags]", the about text and the flags to stderr.
func NewFlagSet(name, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\n%s\n\nFlags (environment variable in brackets):\n", name, about)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args and rejects positional arguments, which none of the
// programs take.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	return nil
}

// Env turns environment variables into flag defaults. A variable that is
// set but does not parse is remembered in Err, so a typo is an error rather
// than a silent default.
type Env struct {
	Getenv func(string) string
	Err    error
}

// Str returns the variable, or def when it is unset or empty.
func (e *Env) Str(name, def string) string {
	if v := e.Getenv(name); v != "" {
		return v
	}
	return def
}

// Int64 returns the variable as an integer, or def when it is unset.
func (e *Env) Int64(name string, def int64) int64 {
	return parseVar(e, name, def, "an integer", func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) })
}

// Int is Int64 for an int.
func (e *Env) Int(name string, def int) int {
	return int(e.Int64(name, int64(def)))
}

// Bool returns the variable as a boolean (1, true, 0, false, …, as
// strconv.ParseBool reads it), or def when it is unset.
func (e *Env) Bool(name string, def bool) bool {
	return parseVar(e, name, def, "true or false", strconv.ParseBool)
}

// Float64 returns the variable as a number, or def when it is unset.
func (e *Env) Float64(name string, def float64) float64 {
	return parseVar(e, name, def, "a number", func(v string) (float64, error) { return strconv.ParseFloat(v, 64) })
}

// Duration returns the variable as a duration such as 1s, or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	return parseVar(e, name, def, "a duration such as 1s or 250ms", time.ParseDuration)
}

// parseVar returns the variable name read by parse, or def when it is
// unset; a value parse refuses is def, and e's first error says it is not
// what.
func parseVar[T any](e *Env, name string, def T, what string, parse func(string) (T, error)) T {
	v := e.Getenv(name)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		e.fail("environment variable %s=%q is not %s", name, v, what)
		return def
	}
	return x
}

func (e *Env) fail(format string, args ...any) {
	if e.Err == nil {
		e.Err = fmt.Errorf(format, args...)
	}
}
