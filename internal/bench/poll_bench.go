package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
)

// benchPoll measures one round of the mount's poller over a tree of 10,000
// cached files that did not change (41 folders): it must cost only the
// listings, one per folder (no per-file command on an MLSD server), and
// under a second of the mount process's CPU.
func benchPoll(ctx context.Context, e *env) ([]result, error) {
	const dirs, files = 40, 250
	root := filepath.Join(e.root, "poll10k")
	if err := makeEmptyTree(root, dirs, files); err != nil {
		return nil, err
	}
	cacheDir, err := e.freshCache("poll")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cacheDir)
	logFile := filepath.Join(e.work, "poll-mount.log")
	os.Remove(logFile)
	m, err := e.mountOursWith(ctx, "poll10k", cacheDir, "--poll-interval", "2s", "--metrics-addr", "127.0.0.1:0",
		"--log-file", logFile, "--log-level", "info")
	if err != nil {
		return nil, err
	}
	addr, err := metricsAddr(logFile)
	var round pollRound
	if err == nil {
		round, err = measurePollRound(ctx, m, addr)
	}
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	if err != nil {
		return nil, err
	}
	folders := float64(dirs + 1)
	return []result{
		{issue: 5, name: fmt.Sprintf("poll round over %d cached files: CPU of the mount process", dirs*files), unit: "s",
			ours: round.cpu.Seconds(), ref: 1, refName: "limit", limit: 1, note: fmt.Sprintf("measured over %s", round.wall.Round(time.Millisecond))},
		{issue: 5, name: fmt.Sprintf("poll round over %d cached files: remote commands", dirs*files), unit: "",
			ours: round.commands, ref: folders, refName: "one listing per folder", limit: 1,
			note: fmt.Sprintf("%.0f listings, %.0f other", round.listings, round.commands-round.listings)},
	}, nil
}

// pollRound is what one poll round cost.
type pollRound struct {
	cpu                time.Duration
	wall               time.Duration
	listings, commands float64
}

// measurePollRound caches the whole tree (ls -lR, which also marks every
// folder used), lets a round pass that may have overlapped it, then takes
// the counters and the process's CPU time around the next full round.
func measurePollRound(ctx context.Context, m *mounted, addr string) (pollRound, error) {
	if _, err := lsLR(ctx, m.dir); err != nil {
		return pollRound{}, err
	}
	snap, err := scrapeMetrics(ctx, addr)
	if err != nil {
		return pollRound{}, err
	}
	if snap, err = waitRounds(ctx, addr, snap["ftpsync_poll_rounds_total"]+1); err != nil {
		return pollRound{}, err
	}
	cpu0, err := procCPU(m.pid)
	if err != nil {
		return pollRound{}, err
	}
	start := time.Now()
	after, err := waitRounds(ctx, addr, snap["ftpsync_poll_rounds_total"]+1)
	if err != nil {
		return pollRound{}, err
	}
	cpu1, err := procCPU(m.pid)
	if err != nil {
		return pollRound{}, err
	}
	ops := func(s map[string]float64) float64 { n, _ := sumCounter(s, metrics.OpsName); return n }
	return pollRound{
		cpu:      cpu1 - cpu0,
		wall:     time.Since(start),
		listings: after["ftpsync_poll_listings_total"] - snap["ftpsync_poll_listings_total"],
		commands: ops(after) - ops(snap),
	}, nil
}

// waitRounds waits until the poller finished at least n rounds and returns
// the counters then.
func waitRounds(ctx context.Context, addr string, n float64) (map[string]float64, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		s, err := scrapeMetrics(ctx, addr)
		if err != nil {
			return nil, err
		}
		if s["ftpsync_poll_rounds_total"] >= n {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("poll round %v did not end within a minute", n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// procCPU is the user and system time a process has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: count the
	// fields after the last ')'. utime and stime are fields 14 and 15.
	rest := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(rest) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(rest[11], 10, 64)
	st, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}
