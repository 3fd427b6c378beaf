package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is sysconf(_SC_CLK_TCK), the unit of /proc/<pid>/stat's times.
// It is 100 on every Linux architecture Go supports (USER_HZ is fixed by
// the kernel ABI), and reading it for real would need cgo.
const clockTicks = 100

// CPU accounts the CPU time of named processes over an interval. Use it from
// one goroutine: NewCPU, Start, then Stop.
type CPU struct {
	pids  map[string]int
	start map[string]float64
}

// NewCPU returns a CPU for the processes named in pids (name → pid). A pid
// of 0 or less is skipped, so optional processes can be listed
// unconditionally.
func NewCPU(pids map[string]int) *CPU {
	c := &CPU{pids: map[string]int{}}
	for name, pid := range pids {
		if pid > 0 {
			c.pids[name] = pid
		}
	}
	return c
}

// Start reads every process's CPU time so far.
func (c *CPU) Start() error {
	c.start = map[string]float64{}
	for name, pid := range c.pids {
		s, err := ProcessCPU(pid)
		if err != nil {
			return fmt.Errorf("cpu of %s: %w", name, err)
		}
		c.start[name] = s
	}
	return nil
}

// Stop returns the CPU seconds each process used since Start. A process
// that exited in between is left out and named in the error.
func (c *CPU) Stop() (map[string]float64, error) {
	out := map[string]float64{}
	var errs []error
	for name, pid := range c.pids {
		s, err := ProcessCPU(pid)
		if err != nil {
			errs = append(errs, fmt.Errorf("cpu of %s: %w", name, err))
			continue
		}
		out[name] = s - c.start[name]
	}
	return out, errors.Join(errs...)
}

// ProcessCPU returns the user+system CPU seconds process pid has used, all
// its threads together (not its children).
func ProcessCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatTicks(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ticks) / clockTicks, nil
}

// parseStatTicks returns utime+stime from the text of /proc/<pid>/stat. The
// second field, comm, is in parentheses and may itself hold spaces and
// parentheses, so the fields are counted from the last ')'.
func parseStatTicks(stat string) (int64, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	// Fields after comm start at field 3 (state); utime and stime are
	// fields 14 and 15 (proc(5)), so indexes 11 and 12 here.
	f := strings.Fields(stat[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return utime + stime, nil
}

// MachineTicks returns the machine's busy and total CPU ticks so far, over
// all cores, from the first line of /proc/stat: busy is every field but
// idle and iowait.
func MachineTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseMachineTicks(string(b))
}

// parseMachineTicks reads the "cpu" line of /proc/stat's text: user nice
// system idle iowait irq softirq steal (guest time is inside user).
func parseMachineTicks(stat string) (busy, total int64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu totals", line)
	}
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// minBusyTicks is the fewest /proc/stat ticks (all cores together) over
// which a busy share is worth reporting: 0.1 s on 2 cores at USER_HZ 100.
// A shorter run (300 pipelined messages take less than a tick) reads as
// 0 or 1 by where the ticks happened to fall.
const minBusyTicks = 20

// BusyUnknown is Result.Busy for a run too short to measure it.
const BusyUnknown = -1.0

// busyShare is busy / total ticks, or BusyUnknown over fewer than
// minBusyTicks.
func busyShare(busy, total int64) float64 {
	if total < minBusyTicks {
		return BusyUnknown
	}
	return float64(busy) / float64(total)
}
