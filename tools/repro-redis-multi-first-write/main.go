// Command repro-redis-multi-first-write reproduces, against a real daprd
// and Redis, a state transaction whose upsert asks for first-write
// concurrency with no ETag and overwrites a key that exists.
//
// components-contrib #1010 made the Redis state store's Set refuse such a
// write: Set passes its concurrency to the script (ARGV[3]), which marks a
// first-written key ("first-write" field) and refuses a first-write with
// no ETag on a marked key. Multi (transactions, state/redis/redis.go,
// components-contrib 1.16.5 and 1.18.0) calls the same script without
// ARGV[3]: it neither marks the keys it writes nor honours first-write,
// so a transaction overwrites a key a transaction wrote, and a first-write
// Set overwrites it too.
//
// It uses no code of this project but tools/reprokit: one redis-server,
// one daprd (app id "repro", no app) with state.redis, and daprd's HTTP
// state API. It exits 1 when a first-write with no ETag overwrote an
// existing key: the defect reproduced.
//
// Needs redis-server, redis-cli and daprd (DAPRD=/path/to/daprd, or daprd
// on PATH, or the build `make daprd` caches under ~/.cache/dapr-pub-sub).
// Run:
//
//	go run ./tools/repro-redis-multi-first-write
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"dapr-pub-sub/tools/reprokit"
)

func main() { reprokit.Main(run) }

func run() error {
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repro-redis-multi-first-write-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := reprokit.FreePorts(1)
	if err != nil {
		return err
	}
	redis, err := reprokit.StartRedis(dir, ports[0])
	if err != nil {
		return err
	}
	defer reprokit.Stop(redis)
	components, err := reprokit.RedisStateStore(dir, ports[0])
	if err != nil {
		return err
	}
	sidecar, err := reprokit.StartSidecar(daprd, dir, "repro", components)
	if err != nil {
		return err
	}
	defer reprokit.Stop(sidecar.Cmd)
	state := sidecar.URL + "/v1.0/state/statestore"
	fmt.Printf("daprd %s, state.redis; every write below asks for first-write concurrency with no ETag\n", sidecar.Version)

	// A first-write Set (POST /state) with no ETag, then another on the
	// same key: the second is refused (#1010's fix).
	set := func(key, value string) (int, error) {
		return post(state, fmt.Sprintf(`[{"key":%q,"value":%q,"options":{"concurrency":"first-write"}}]`, key, value))
	}
	// The same as an upsert in a transaction (POST /state/<store>/transaction).
	multi := func(key, value string) (int, error) {
		return post(state+"/transaction", fmt.Sprintf(`{"operations":[{"operation":"upsert","request":{"key":%q,"value":%q,"options":{"concurrency":"first-write"}}}]}`, key, value))
	}
	overwritten := false
	for _, c := range []struct {
		name          string
		first, second func(key, value string) (int, error)
	}{
		{"Set, then Set", set, set},
		{"transaction, then transaction", multi, multi},
		{"transaction, then Set", multi, set},
		{"Set, then transaction", set, multi},
	} {
		key := strings.NewReplacer(", then ", "-", " ", "").Replace(c.name)
		s1, err := c.first(key, "first")
		if err != nil {
			return err
		}
		s2, err := c.second(key, "second")
		if err != nil {
			return err
		}
		got, err := get(state + "/" + key)
		if err != nil {
			return err
		}
		verdict := "refused: first-write held"
		if got != `"first"` {
			verdict, overwritten = "OVERWRITTEN: first-write did not hold", true
		}
		fmt.Printf("%-30s first write %d, second %d, the key holds %s: %s\n", c.name+":", s1, s2, got, verdict)
	}
	if overwritten {
		return errors.New("a first-write with no ETag overwrote an existing key")
	}
	return nil
}

// post sends body to url as JSON and returns the status.
func post(url, body string) (int, error) {
	resp, err := http.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// get returns the body of a GET of url.
func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
