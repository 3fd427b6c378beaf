package k8s

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down stops the cluster and removes everything Up made, whatever state
// it is in (safe to call when nothing is up): the pods' processes, the
// node's processes and containerd's shims, the mounts under the cluster's
// folders and the pods' network namespaces, the node's namespace with its
// link, the kubelet's cgroups; it puts back the kernel settings the
// kubelet changed and removes the folders.
func Down(log io.Writer) {
	for range 20 { // the pods' processes: whatever is in the cluster's cgroups
		if killCgroups() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := len(processes) - 1; i >= 0; i-- {
		stopProcess(processes[i])
	}
	for _, pid := range shims() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killCgroups()
	unmountUnder(StateDir, RunDir)
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "cni-") { // the pods' (one cluster per machine)
				_ = run("ip", "netns", "delete", e.Name())
			}
		}
	}
	if _, err := os.Stat("/run/netns/" + NodeNS); err == nil {
		if err := run("ip", "netns", "delete", NodeNS); err != nil {
			fmt.Fprintf(log, "k8s: %v\n", err)
		}
	}
	_ = run("ip", "link", "delete", hostLink) // gone with the namespace, unless that failed
	removeCgroups()
	restoreSysctls()
	if b, err := os.ReadFile(filepath.Join(StateDir, "absent-paths")); err == nil {
		for p := range strings.FieldsSeq(string(b)) {
			unmountUnder(p)
			_ = os.RemoveAll(p)
		}
	}
	for _, d := range []string{RunDir, StateDir} {
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(log, "k8s: remove %s: %v\n", d, err)
		}
	}
}

// stopProcess stops a node process recorded by start: SIGTERM, then
// SIGKILL after 10 s.
func stopProcess(name string) {
	pidFile := filepath.Join(StateDir, "pids", name)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if syscall.Kill(pid, syscall.SIGTERM) == nil {
		for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Remove(pidFile)
}

// alive reports whether pid runs (a zombie counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// shims are containerd's shim processes of this cluster's containerd.
func shims() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "containerd-shim") && strings.Contains(string(cmd), containerdSock()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cgroupDirs are the cluster's cgroup folders in every hierarchy.
func cgroupDirs() []string {
	var dirs []string
	hier, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hier {
		root := filepath.Join("/sys/fs/cgroup", h.Name(), CgroupRoot)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	return dirs
}

// killCgroups sends SIGKILL to every process in the cluster's cgroups and
// returns how many there were.
func killCgroups() int {
	seen := map[int]bool{}
	for _, d := range cgroupDirs() {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for f := range strings.FieldsSeq(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return len(seen)
}

// removeCgroups removes the cluster's cgroup folders, deepest first.
func removeCgroups() {
	dirs := cgroupDirs()
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

// unmountUnder unmounts (lazily, deepest first) every mount below the
// folders.
func unmountUnder(dirs ...string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var targets []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		mp := strings.ReplaceAll(f[1], `\040`, " ")
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				targets = append(targets, mp)
			}
		}
	}
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, t := range targets {
		_ = syscall.Unmount(t, syscall.MNT_DETACH)
	}
}

// makeCgroupRoot makes CgroupRoot in every cgroup hierarchy for the
// kubelet (cpuset's with its parent's CPUs and memory nodes).
func makeCgroupRoot() error {
	hier, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, h := range hier {
		base := filepath.Join("/sys/fs/cgroup", h.Name())
		if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
			continue // not a hierarchy
		}
		dir := filepath.Join(base, CgroupRoot)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(base, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("k8s: %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}
