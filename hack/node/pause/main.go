// The pod sandbox's pause process for the local real node (hack/node-up.sh builds it into
// a one-file image): it sleeps until SIGTERM or SIGINT, then exits 0, like
// registry.k8s.io/pause, which cannot be pulled here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
