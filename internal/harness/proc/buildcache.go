package proc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// BuildOnce returns the folder <name>-<hash> of the build cache (CacheDir),
// the hash being of the contents of files (names in src) and of salt (what
// else the build depends on: packages, flags), after build has filled it. It builds once
// per machine: done reports whether a folder is complete, so a later call
// finds it, and callers at the same time, in this process or others, wait
// for the one that builds (a lock file beside the folder). A change to
// files or salt builds into a new folder.
func BuildOnce(name, src string, files []string, salt string, done func(dir string) bool, build func(dir string) error) (string, error) {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	h.Write([]byte(salt))
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, name+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	if done(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // closing the file unlocks it
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if done(dir) {
		return dir, nil // another process built it while we waited
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := build(dir); err != nil {
		return "", err
	}
	return dir, nil
}
