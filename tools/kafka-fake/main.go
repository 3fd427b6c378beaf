// Command kafka-fake runs an in-memory-first Kafka-protocol broker
// (github.com/twmb/franz-go/pkg/kfake) on 127.0.0.1, for the launcher's
// Kafka mode: there is no Kafka package on the machines this project runs
// on. It is a test broker: one process, one node, no replication; with
// -data-dir it keeps its log on disk (fsynced per batch) across restarts.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 9092, "port to listen on, on 127.0.0.1")
	dataDir := flag.String("data-dir", "", "keep the log here across restarts (fsync per batch); empty keeps it in memory")
	partitions := flag.Int("partitions", 1, "partitions of auto-created topics")
	flag.Parse()
	opts := []kfake.Opt{kfake.Ports(*port), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(*partitions)}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir), kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-fake:", err)
		os.Exit(1)
	}
	fmt.Printf("kafka-fake listening on %s\n", c.ListenAddrs()[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}
