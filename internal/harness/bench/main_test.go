package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for cmd/bench as the dapr-bare
// scenario's app: that scenario runs its own executable with BareAppArg.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == BareAppArg {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := BareApp(ctx, os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "bare app:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}
