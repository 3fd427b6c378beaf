// Package bench is the end-to-end benchmark harness: an open-loop load
// generator, a delivery Recorder with an HDR latency histogram, per-process
// CPU accounting, the baseline scenarios (raw Redis Streams, Watermill) and
// the runner behind cmd/bench that repeats every scenario interleaved and
// writes results.json, results.md and plot.svg.
//
// A scenario is one way of moving N orders from a producer to a consumer
// through Redis. It creates a Recorder, starts its consumer (which calls
// Recorder.Deliver for every message it receives, or the scenario feeds the
// Recorder afterwards from another source), and hands a SendFunc to Measure,
// which drives the load, waits for the deliveries and accounts CPU.
package bench

import (
	"context"
	"io"
	"time"
)

// Scenario is one system under test.
type Scenario interface {
	// Name identifies the scenario in flags, tables and the plot: short,
	// lower case, no spaces (e.g. "redis", "watermill").
	Name() string
	// Run sends p.Messages orders at p.Rate through the system, waits for
	// them to be delivered, and returns what was measured. It must leave
	// nothing behind (streams, processes) when it returns. An error means
	// the run could not be measured at all; lost or duplicated messages are
	// results, not errors.
	Run(ctx context.Context, p Params) (Result, error)
}

// Params is what one run of a scenario is asked to do.
type Params struct {
	// Messages is how many orders to send, with ids 0..Messages-1.
	Messages int
	// Rate is the offered load in messages per second; 0 sends as fast
	// as the senders can (throughput mode).
	Rate float64
	// Size is the payload size in bytes that Payload pads orders to.
	Size int
	// Senders is how many goroutines send concurrently (≥ 1).
	Senders int
	// Idle is how long Recorder.Wait waits without a new delivery before
	// it gives up and counts the missing messages as lost.
	Idle time.Duration
	// Redis is the broker every scenario shares.
	Redis Redis
	// RunID is unique per run: use it to name streams, groups and
	// consumers so that no run sees another's messages.
	RunID string
	// Out receives progress and diagnostic output; never nil.
	Out io.Writer
	// Profile, if set, is a folder for CPU profiles of the Dapr
	// scenarios' processes during fixed-rate runs.
	Profile string
}

// Redis is the running redis-server the scenarios share.
type Redis struct {
	Addr     string // host:port
	Password string // for AUTH; "" for none
	Pid      int    // redis-server's process id, for CPU accounting; 0 if unknown
}

// Mode returns "throughput" for Rate 0 and "rate" otherwise.
func (p Params) Mode() string {
	if p.Rate <= 0 {
		return ModeThroughput
	}
	return ModeRate
}

// Modes of a run.
const (
	ModeThroughput = "throughput" // as fast as possible; the delivered msg/s is the result
	ModeRate       = "rate"       // a fixed offered rate; the latency is the result
)
