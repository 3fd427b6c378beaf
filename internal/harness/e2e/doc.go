// Package e2e holds the integration tests: they start real processes —
// redis-server, one daprd per app, and the app binaries — through
// internal/launcher, and check what comes out the other end.
//
// They need redis-server on PATH (apt-get install -y redis-server) and a
// daprd, which the launcher builds from tools/daprd on first use.
package e2e
