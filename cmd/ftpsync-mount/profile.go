package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file the mount process writes a CPU profile of its
// whole run to (a debugging aid, not a flag: go tool pprof reads it).
const cpuProfileEnv = "FTPSYNC_CPUPROFILE"

// startCPUProfile starts the profile cpuProfileEnv asks for and returns
// the function that ends it; without the variable both do nothing.
func startCPUProfile() (stop func(), err error) {
	p := os.Getenv(cpuProfileEnv)
	if p == "" {
		return func() {}, nil
	}
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
