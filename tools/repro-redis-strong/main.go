// Command repro-redis-strong reproduces, against a real daprd and Redis, a
// state write made with consistency "strong" that daprd acknowledges
// although no replica has it, and that the replica's promotion then loses.
//
// The Redis state store (components-contrib 1.16.5 and 1.18.0,
// state/redis/redis.go Set) follows a strong write with WAIT <replicas>
// 1000, but:
//   - it discards WAIT's reply, the number of replicas that have the
//     write: a write no replica has returns success after the second;
//   - it sends WAIT through the pooled client, on whatever connection the
//     pool hands out, while WAIT concerns the writes of its own connection;
//   - <replicas> is connected_slaves read once, at Init.
//
// This shows the first: the others are read in the source.
//
// It uses no code of this project but tools/reprokit: a primary and one
// replica (redis-server), one daprd (app id "repro", no app) with
// state.redis on the primary. It writes -n keys with consistency strong
// while the replica is healthy; cuts the replica off (SIGSTOP, and the
// primary drops its link: what a network cut does) and writes -n more,
// every one answered 204; then kills the primary and promotes the replica (SIGCONT,
// REPLICAOF NO ONE: what Sentinel does) and counts the acknowledged strong
// writes it has. It exits 1 when one is missing: the defect reproduced.
//
// Needs redis-server, redis-cli and daprd (DAPRD=/path/to/daprd, or daprd
// on PATH, or the build `make daprd` caches under ~/.cache/dapr-pub-sub).
// Run:
//
//	go run ./tools/repro-redis-strong
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"dapr-pub-sub/tools/reprokit"
)

func main() { reprokit.Main(run) }

func run() error {
	nFlag := flag.Int("n", 100, "strong writes in each phase")
	workersFlag := flag.Int("c", 8, "writes in flight at once")
	flag.Parse()
	n, workers := *nFlag, *workersFlag
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repro-redis-strong-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := reprokit.FreePorts(2)
	if err != nil {
		return err
	}
	primaryPort, replicaPort := ports[0], ports[1]

	primary, err := reprokit.StartRedis(dir, primaryPort)
	if err != nil {
		return err
	}
	defer reprokit.Stop(primary)
	replica, err := reprokit.StartRedis(dir, replicaPort, "--replicaof", "127.0.0.1", strconv.Itoa(primaryPort))
	if err != nil {
		return err
	}
	defer reprokit.Stop(replica)
	onPrimary, onReplica := reprokit.RedisCLI(primaryPort), reprokit.RedisCLI(replicaPort)
	if err := reprokit.WaitFor(30*time.Second, func() bool {
		info, _ := onPrimary("INFO", "replication")
		return strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	}); err != nil {
		return fmt.Errorf("the replica did not come online: %w", err)
	}

	components, err := reprokit.RedisStateStore(dir, primaryPort)
	if err != nil {
		return err
	}
	sidecar, err := reprokit.StartSidecar(daprd, dir, "repro", components)
	if err != nil {
		return err
	}
	defer reprokit.Stop(sidecar.Cmd)
	fmt.Printf("daprd %s, state.redis on a primary with one replica; %d writes with consistency strong a phase, %d at once\n",
		sidecar.Version, n, workers)

	save := saver(sidecar.URL + "/v1.0/state/statestore")
	healthy, err := writeAll(save, "healthy", n, workers)
	if err != nil {
		return err
	}
	fmt.Printf("replica healthy: %d of %d answered 204 (%d within 100 ms); took %s\n", n, n, healthy.under100ms, healthy.took)

	// The replica cut off: stopped, and its link to the primary broken,
	// so it cannot catch up before the primary is gone.
	if err := replica.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	// What WAIT answers on the connection that wrote.
	wrote, err := cliScript(primaryPort, "SET probe 1", "WAIT 1 1000")
	if err != nil {
		return err
	}
	fmt.Printf("replica stopped: SET then WAIT 1 1000 on one connection answers %q: the number of replicas that have the write\n", wrote)
	if _, err := onPrimary("CLIENT", "KILL", "TYPE", "replica"); err != nil {
		return err
	}
	cut, err := writeAll(save, "cut", n, workers)
	if err != nil {
		return err
	}
	fmt.Printf("replica cut off: %d of %d answered 204 (%d within 100 ms, the others after WAIT's 1 s with no replica: daprd does not read its answer); took %s\n",
		n, n, cut.under100ms, cut.took)

	reprokit.Stop(primary) // SIGKILL
	if err := replica.Process.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	if _, err := onReplica("REPLICAOF", "NO", "ONE"); err != nil {
		return err
	}
	kept := map[string]int{}
	for _, phase := range []string{"healthy", "cut"} {
		keys, err := onReplica("--scan", "--pattern", "repro||"+phase+"-*")
		if err != nil {
			return err
		}
		kept[phase] = len(strings.Fields(keys))
	}
	fmt.Printf("after the primary's kill and the replica's promotion: %d of %d strong writes kept from the healthy phase, %d of %d from the cut-off one\n",
		kept["healthy"], n, kept["cut"], n)
	if kept["healthy"] < n || kept["cut"] < n {
		return errors.New("writes acknowledged with consistency strong were lost in the failover")
	}
	return nil
}

// cliScript sends commands to Redis on port through one redis-cli
// connection and returns the answers.
func cliScript(port int, commands ...string) ([]string, error) {
	cmd := exec.Command("redis-cli", "-p", strconv.Itoa(port))
	cmd.Stdin = strings.NewReader(strings.Join(commands, "\n") + "\n")
	out, err := cmd.Output()
	return strings.Fields(string(out)), err
}

// saver posts one key with consistency strong to daprd's state API.
func saver(url string) func(key string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(key string) error {
		body := fmt.Sprintf(`[{"key":%q,"value":"v","options":{"consistency":"strong"}}]`, key)
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("save %s: HTTP %d: %s", key, resp.StatusCode, b)
		}
		return nil
	}
}

// phase is how a run of writes went.
type phase struct {
	took       time.Duration
	under100ms int // writes answered within 100 ms
}

// writeAll saves keys name-0 … name-(n-1), workers at once; the first
// refused write is the error.
func writeAll(save func(string) error, name string, n, workers int) (phase, error) {
	start := time.Now()
	keys := make(chan string)
	var mu sync.Mutex
	var errs []error
	var p phase
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := range keys {
				t := time.Now()
				err := save(k)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if time.Since(t) < 100*time.Millisecond {
					p.under100ms++
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		keys <- name + "-" + strconv.Itoa(i)
	}
	close(keys)
	wg.Wait()
	if len(errs) > 0 {
		return p, fmt.Errorf("%d of %d strong writes refused, the first: %w", len(errs), n, errs[0])
	}
	p.took = time.Since(start).Round(time.Millisecond)
	return p, nil
}
