package k8s

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LogFollower reads the logs of a container name in every pod of a
// namespace straight from the kubelet's files on the node, as they
// appear: each file stays open once seen, so the lines of a container that
// was killed, restarted or deleted with its pod are all read.
type LogFollower struct {
	ns, container string
	onLine        func(pod, line string)
	stop          chan struct{}
	done          chan struct{}
	mu            sync.Mutex
	files         map[uint64]*followed // by inode
}

type followed struct {
	pod  string
	f    *os.File
	r    *bufio.Reader
	part string // a line read in part: the rest is not written yet
	cri  string // the text of CRI partial (P) records so far
}

// FollowLogs starts reading; onLine gets each line of the container's
// output (without the CRI prefix), in order per container run.
func FollowLogs(ns, container string, onLine func(pod, line string)) *LogFollower {
	l := &LogFollower{ns: ns, container: container, onLine: onLine, stop: make(chan struct{}), done: make(chan struct{}), files: map[uint64]*followed{}}
	go func() {
		defer close(l.done)
		for {
			l.poll()
			select {
			case <-l.stop:
				l.poll()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return l
}

// Flush reads what is written so far.
func (l *LogFollower) Flush() { l.poll() }

// Stop stops reading and closes the files.
func (l *LogFollower) Stop() {
	close(l.stop)
	<-l.done
	for _, f := range l.files {
		f.f.Close()
	}
}

func (l *LogFollower) poll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	// podLogsDir/<ns>_<pod>_<uid>/<container>/<restart>.log
	paths, _ := filepath.Glob(filepath.Join(StateDir, "pod-logs", l.ns+"_*", l.container, "*.log"))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		if _, ok := l.files[ino]; ok {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		pod := strings.SplitN(strings.TrimPrefix(filepath.Base(filepath.Dir(filepath.Dir(p))), l.ns+"_"), "_", 2)[0]
		l.files[ino] = &followed{pod: pod, f: f, r: bufio.NewReaderSize(f, 64<<10)}
	}
	for _, fl := range l.files {
		for {
			s, err := fl.r.ReadString('\n')
			if err != nil {
				fl.part += s // the rest comes later (io.EOF), or never
				break
			}
			line := fl.part + strings.TrimSuffix(s, "\n")
			fl.part = ""
			// CRI format: <time> <stream> <P|F> <text>; P is a partial line.
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 {
				continue
			}
			if f[2] == "P" {
				fl.cri += f[3]
				continue
			}
			text := fl.cri + f[3]
			fl.cri = ""
			l.onLine(fl.pod, text)
		}
	}
}
