package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// cpuProfileEnv names a file the mount process writes a CPU profile of its
// whole run to (a debugging aid, not a flag: go tool pprof reads it).
const cpuProfileEnv = "FTPSYNC_CPUPROFILE"

// traceEnv names a file the mount process writes a runtime execution trace
// of its whole run to: go tool trace -pprof=sync (or net, syscall, sched)
// shows where kernel requests wait, which a CPU profile does not.
const traceEnv = "FTPSYNC_TRACE"

// startCPUProfile starts the profile cpuProfileEnv and the trace traceEnv
// ask for and returns the function that ends them; without the variables
// both do nothing.
func startCPUProfile() (stop func(), err error) {
	stopTrace, err := startTrace()
	if err != nil {
		return nil, err
	}
	p := os.Getenv(cpuProfileEnv)
	if p == "" {
		return stopTrace, nil
	}
	f, err := os.Create(p)
	if err != nil {
		stopTrace()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		stopTrace()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		stopTrace()
	}, nil
}

func startTrace() (stop func(), err error) {
	p := os.Getenv(traceEnv)
	if p == "" {
		return func() {}, nil
	}
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", traceEnv, err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", traceEnv, err)
	}
	return func() {
		trace.Stop()
		f.Close()
	}, nil
}
