package cluster

import (
	"io"
	"net"
	"sync"
	"time"
)

// Balancer is a TCP balancer on loopback in front of a cluster's nodes,
// for clients that take one address — as a Kubernetes Service gives them
// one: each connection goes to the next node in turn that accepts it
// within a second. When a node goes, the connections through it close and
// their clients reconnect to another; a node cut off is noticed by the
// client's own heartbeats.
type Balancer struct {
	ln    net.Listener
	nodes []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewBalancer listens on a free loopback port and serves until Close.
func NewBalancer(nodes []string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{ln: ln, nodes: nodes, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.proxy(c)
		}()
	}
}

// proxy joins c to the first node, from the next in turn, that accepts.
func (b *Balancer) proxy(c net.Conn) {
	defer c.Close()
	b.mu.Lock()
	first := b.next
	b.next = (b.next + 1) % len(b.nodes)
	b.mu.Unlock()
	var up net.Conn
	for i := range b.nodes {
		var err error
		if up, err = net.DialTimeout("tcp", b.nodes[(first+i)%len(b.nodes)], time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return // no node: the client sees its connection closed, and retries
	}
	defer up.Close()
	if !b.track(c, up) {
		return
	}
	defer b.untrack(c, up)
	done := make(chan struct{}, 2)
	for _, p := range [][2]net.Conn{{up, c}, {c, up}} {
		go func() {
			_, _ = io.Copy(p[0], p[1])
			p[0].Close() // one side gone: close both, as the node's end would
			p[1].Close()
			done <- struct{}{}
		}()
	}
	<-done
	<-done
}

// track records a proxied pair so that Close can end it; false when the
// balancer is closed.
func (b *Balancer) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conns == nil {
		return false
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *Balancer) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		delete(b.conns, c)
	}
}

// Close stops listening, closes every proxied connection and waits for
// their goroutines.
func (b *Balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
}
