package bench

import (
	"context"
	"fmt"
)

// Measurement is the part of a scenario's run that Measure drives.
type Measurement struct {
	// Recorder is where the consumer side records deliveries; required,
	// made with NewRecorder(p.Messages).
	Recorder *Recorder
	// Processes are accounted for CPU over the run (name → pid), e.g.
	// {"redis-server": p.Redis.Pid, "bench (producer+consumer)": os.Getpid()}.
	Processes map[string]int
	// Send sends one batch; Batch bounds its size (default 1).
	Send  SendFunc
	Batch int
	// Collect, if set, is called once the load is sent, instead of
	// Recorder.Wait(ctx, p.Idle): it must return when the deliveries are
	// all in the Recorder (or given up on), e.g. after polling a store
	// until no progress for p.Idle and feeding what it read to Deliver.
	Collect func(ctx context.Context, rec *Recorder) error
}

// Measure runs p's load through m.Send with Generate, waits for the
// deliveries, and returns the Recorder's Result with the load stats and the
// CPU each process used from just before the first send until the
// deliveries were in.
func Measure(ctx context.Context, p Params, m Measurement) (Result, error) {
	if m.Recorder == nil || m.Send == nil {
		return Result{}, fmt.Errorf("bench.Measure: Recorder and Send are required")
	}
	cpu := NewCPU(m.Processes)
	if err := cpu.Start(); err != nil {
		return Result{}, err
	}
	busy0, total0, err := MachineTicks()
	if err != nil {
		return Result{}, err
	}
	load := Load{Messages: p.Messages, Rate: p.Rate, Senders: p.Senders, Batch: m.Batch}
	stats, err := Generate(ctx, load, m.Recorder, m.Send)
	if err != nil {
		return Result{}, fmt.Errorf("generate load: %w", err)
	}
	if m.Collect != nil {
		err = m.Collect(ctx, m.Recorder)
	} else {
		err = m.Recorder.Wait(ctx, p.Idle)
	}
	if err != nil {
		return Result{}, fmt.Errorf("wait for deliveries: %w", err)
	}
	used, cpuErr := cpu.Stop()
	busy1, total1, err := MachineTicks()
	if err != nil {
		return Result{}, err
	}
	res := m.Recorder.Result()
	res.Busy = busyShare(busy1-busy0, total1-total0)
	res.SendSeconds = stats.Elapsed.Seconds()
	res.MaxLagMs = float64(stats.MaxLag.Microseconds()) / 1000
	res.CPUSeconds = used
	res.CPUPer1k = map[string]float64{}
	n := float64(max(res.Sent, 1))
	for name, s := range used {
		res.CPUPer1k[name] = s / n * 1000
	}
	return res, cpuErr
}
