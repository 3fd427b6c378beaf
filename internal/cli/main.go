package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Program is a program's whole body, as every main calls it: it runs until
// it is done or ctx ends (Ctrl-C, SIGTERM), reading args (without the
// program name) and getenv, writing to stdout and stderr.
type Program func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Main runs run as the process's program: ctx ends on SIGINT or SIGTERM;
// flag.ErrHelp (the usage was printed after -h) exits with status 0, any
// other error is printed as "name: error" and exits with status 1.
func Main(name string, run Program) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Defaults is the Config that parse gives for no flags and an empty
// environment: an app's DefaultConfig. Defaults that do not parse are a
// bug, and it panics.
func Defaults[C any](parse func(args []string, getenv func(string) string, stderr io.Writer) (C, error)) C {
	c, err := parse(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		panic(fmt.Sprintf("the defaults do not parse: %v", err))
	}
	return c
}
