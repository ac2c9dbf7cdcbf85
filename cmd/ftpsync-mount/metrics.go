package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// registerMetricsFlag adds --metrics-addr to a command that talks to a
// remote side (mount, sync, upload, download).
func registerMetricsFlag(fs *pflag.FlagSet, addr *string) {
	fs.StringVar(addr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9163 (port 0 picks one and logs it)")
}

// withMetrics wraps the remote side so that its calls are counted, if
// metrics were asked for; otherwise it returns t as it is and a nil
// registry, so that a run without --metrics-addr pays nothing.
func withMetrics(addr string, t target.Target) (target.Target, *metrics.Registry) {
	if addr == "" {
		return t, nil
	}
	reg := metrics.NewRegistry()
	return metrics.WrapTarget(t, reg), reg
}

// mountGauges registers the gauges a mount reads at scrape time from its
// cache: the write-back queue length.
func mountGauges(reg *metrics.Registry, c *cache.Cache) {
	if reg == nil {
		return
	}
	reg.GaugeFunc("ftpsync_writeback_queue_length", "Operations waiting in the write-back journal, running ones included.",
		func() float64 { return float64(c.JournalLen()) })
}

// isLoopback reports whether a bound address is reachable from this host
// only. The address as bound, not as given: "localhost:0" may resolve to
// either, ":9163" means every interface.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// metricsShutdown bounds how long stop waits for a scrape in progress.
const metricsShutdown = 2 * time.Second

// startMetrics serves reg at http://addr/metrics until stop is called. An
// empty addr serves nothing and returns a stop that does nothing. Any
// address is accepted, but one other than loopback draws a warning: the
// counters reveal when and how much the user reads and writes. The bound
// address is logged at info, so that port 0 can be found.
func startMetrics(addr string, reg *metrics.Registry, log logrus.FieldLogger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	if reg == nil {
		return nil, errors.New("metrics: no registry to serve")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w; give a free host:port such as 127.0.0.1:9163", addr, err)
	}
	bound := ln.Addr().String()
	if !isLoopback(ln.Addr()) {
		log.WithField("addr", bound).Warn("metrics are reachable from other hosts and reveal file activity; " +
			"use --metrics-addr 127.0.0.1:PORT unless a firewall guards this port")
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", reg.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped; metrics are no longer served")
		}
	}()
	log.WithField("addr", bound).Infof("metrics at http://%s/metrics", bound)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-done
	}, nil
}
