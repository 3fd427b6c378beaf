// Command pause is the pods' sandbox process in the Kubernetes fixture
// (containerd's sandbox_image): it holds the pod's namespaces and sleeps
// until SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
