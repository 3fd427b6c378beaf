package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPU          string `json:"cpu"`
	Cores        int    `json:"cores"`
	OS           string `json:"os"`
	Kernel       string `json:"kernel"`
	GoVersion    string `json:"go_version"`
	RedisVersion string `json:"redis_version"`
	Date         string `json:"date"`
}

// DescribeMachine looks the machine up; what it cannot find stays "unknown".
func DescribeMachine() Machine {
	m := Machine{
		CPU: "unknown", Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		Kernel: "unknown", GoVersion: runtime.Version(), RedisVersion: "unknown",
		Date: time.Now().UTC().Format(time.RFC3339),
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.RedisVersion = strings.TrimSpace(string(out))
	}
	return m
}
