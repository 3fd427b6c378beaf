// Package e2e holds the integration tests: they start the real system —
// redis-server (or another broker), one daprd per app, the app binaries —
// through internal/harness/system, the same declaration `make run` and the
// benchmark start, and check what comes out the other end, in Redis and in
// the apps' output. TestReadmeQuickStart runs the README's quick start as
// written.
//
// They need redis-server on PATH (apt-get install -y redis-server) and a
// daprd, which the launcher finds or builds from tools/daprd on first use;
// the broker, cluster and page tests name what else they need when it is
// missing. Nothing here is skipped.
package e2e
