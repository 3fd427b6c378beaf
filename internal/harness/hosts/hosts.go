// Package hosts makes test hosts of the tests' own: network namespaces,
// each with one address on a private bridge, so that a clustered broker
// runs one node per host and a test can stop a node, kill it, or cut it
// off the network and heal it — as a host of a real cluster would fail.
//
// Only these namespaces and loopback are ever addressed: the bridge has
// an address of the same subnet in the root namespace (so daprd and the
// tests reach the hosts), no route leads anywhere else, and nothing is
// forwarded or masqueraded. The subnet is from TEST-NET-2
// (198.51.100.0/24, RFC 5737), which no real host uses.
//
// It needs root and iproute2 (`ip`). One Net per name at a time; New
// removes what a killed earlier run of the same name left behind. Nets
// that live at once (test packages run in parallel) each get a subnet of
// their own: a free /27 of the one asked for, held with a file lock, since
// two bridges with one subnet would steal each other's routes.
package hosts

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultSubnet is where the hosts' addresses come from: TEST-NET-2.
var DefaultSubnet = netip.MustParsePrefix("198.51.100.0/24")

// Net is a bridge with hosts on it.
type Net struct {
	name   string // short: namespaces and links are named after it
	bridge string
	subnet netip.Prefix
	lock   *os.File // holds the subnet's slot

	mu    sync.Mutex
	hosts []*Host
}

// Host is one network namespace with one address on the Net's bridge.
type Host struct {
	Name string     // as given to Add
	NS   string     // the namespace, for `ip netns exec`
	Addr netip.Addr // its address on the bridge
	net  *Net
	link string // the bridge side of its veth pair
}

// New makes the bridge for name (at most 6 letters or digits) on a free
// /27 of within, with its first address in the root namespace. Close
// removes it and every host, and frees the slot.
func New(name string, within netip.Prefix) (*Net, error) {
	if len(name) == 0 || len(name) > 6 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return nil, fmt.Errorf("hosts: name %q: 1–6 lower-case letters or digits", name)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("hosts: needs iproute2's `ip`: apt-get install -y iproute2")
	}
	n := &Net{name: name, bridge: "br-" + name}
	n.cleanStale()
	var err error
	if n.subnet, n.lock, err = takeSlot(within.Masked()); err != nil {
		return nil, err
	}
	gw := n.subnet.Addr().Next()
	if err := run("ip", "link", "add", n.bridge, "type", "bridge"); err != nil {
		n.Close()
		return nil, fmt.Errorf("hosts: make bridge %s (root needed): %w", n.bridge, err)
	}
	for _, args := range [][]string{
		{"ip", "addr", "add", netip.PrefixFrom(gw, n.subnet.Bits()).String(), "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
	} {
		if err := run(args...); err != nil {
			n.Close()
			return nil, fmt.Errorf("hosts: %w", err)
		}
	}
	return n, nil
}

// Add makes host name (letters or digits) with the next free address.
func (n *Net) Add(name string) (*Host, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := len(n.hosts) + 1
	addr := n.subnet.Addr().Next() // the bridge's
	for range i + 9 {              // hosts from .11 on
		addr = addr.Next()
	}
	if !n.subnet.Contains(addr) {
		return nil, fmt.Errorf("hosts: subnet %s is full", n.subnet)
	}
	h := &Host{Name: name, NS: "dps-" + n.name + "-" + name, Addr: addr, net: n, link: "v" + n.name + strconv.Itoa(i)}
	peer := h.link + "p"
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "link", "add", h.link, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", h.NS},
		{"ip", "link", "set", h.link, "master", n.bridge},
		{"ip", "link", "set", h.link, "up"},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		{"ip", "-n", h.NS, "link", "set", peer, "name", "eth0"},
		{"ip", "-n", h.NS, "addr", "add", netip.PrefixFrom(addr, n.subnet.Bits()).String(), "dev", "eth0"},
		{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
	}
	n.hosts = append(n.hosts, h)
	for _, args := range steps {
		if err := run(args...); err != nil {
			return nil, fmt.Errorf("hosts: add %s: %w", name, err)
		}
	}
	return h, nil
}

// Hosts returns the hosts in the order they were added.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

// Close removes every host and the bridge. Safe to call twice.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.hosts {
		_ = run("ip", "netns", "delete", h.NS) // its end of the pair goes with it
		_ = run("ip", "link", "delete", h.link)
	}
	n.hosts = nil
	_ = run("ip", "link", "delete", n.bridge)
	if n.lock != nil {
		n.lock.Close() // frees the slot
		n.lock = nil
	}
}

// slotBits is the size of a Net's subnet: 32 addresses, the bridge's and
// room for hosts .11 to .30 of it.
const slotBits = 27

// takeSlot locks the first free /27 of within (a lock file per slot in the
// temp folder, held until the returned file is closed).
func takeSlot(within netip.Prefix) (netip.Prefix, *os.File, error) {
	if within.Bits() > slotBits {
		return netip.Prefix{}, nil, fmt.Errorf("hosts: subnet %s is smaller than a /%d", within, slotBits)
	}
	addr := within.Addr()
	for i := 0; i < 1<<(slotBits-within.Bits()); i++ {
		slot := netip.PrefixFrom(addr, slotBits)
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "dapr-pub-sub-hosts-"+strings.ReplaceAll(slot.String(), "/", "_")+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return netip.Prefix{}, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			return slot, f, nil
		}
		f.Close()
		for range 1 << (32 - slotBits) {
			addr = addr.Next()
		}
	}
	return netip.Prefix{}, nil, fmt.Errorf("hosts: every /%d of %s is in use", slotBits, within)
}

// cleanStale removes the namespaces and bridge an earlier run of the same
// name left behind (a test killed before its cleanup).
func (n *Net) cleanStale() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if ns, _, _ := strings.Cut(line, " "); strings.HasPrefix(ns, "dps-"+n.name+"-") {
			_ = run("ip", "netns", "delete", ns)
		}
	}
	_ = run("ip", "link", "delete", n.bridge)
}

// Argv is the command line that runs path with args inside the host's
// namespace (argv[0] is the program), for exec.Command or a
// launcher.Process: `ip netns exec` execs it, so the process's pid is the
// command's own.
func (h *Host) Argv(path string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", h.NS, path}, args...)
}

// Command is exec.Command of path with args inside the host's namespace.
func (h *Host) Command(path string, args ...string) *exec.Cmd {
	argv := h.Argv(path, args...)
	return exec.Command(argv[0], argv[1:]...)
}

// Cut takes the host off the network (its link to the bridge down): its
// processes run on but reach no one and no one reaches them.
func (h *Host) Cut() error { return run("ip", "link", "set", h.link, "down") }

// Heal puts a cut host back on the network.
func (h *Host) Heal() error { return run("ip", "link", "set", h.link, "up") }

// String is the host's address.
func (h *Host) String() string { return h.Addr.String() }

func run(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
