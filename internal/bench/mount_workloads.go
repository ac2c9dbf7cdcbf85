package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// benchMountList times ls -lR of the Go source tree through rclone's mount
// and ours, cold (fresh cache, fresh mount, page cache dropped) and warm
// (again on the same mount), and on the server's own folder as the local
// reference.
func benchMountList(ctx context.Context, e *env) ([]result, error) {
	if err := e.ensureGoSrc(); err != nil {
		return nil, err
	}
	local := filepath.Join(e.root, "gosrc")
	if _, err := lsLR(ctx, local); err != nil { // warm the page cache
		return nil, err
	}
	dLocal, err := best(3, func() error { _, err := lsLR(ctx, local); return err })
	if err != nil {
		return nil, err
	}
	// Two rounds, alternating, each mount cold from scratch: the best of
	// each is the least disturbed by whatever else the machine runs.
	cold, warm := map[string]time.Duration{}, map[string]time.Duration{}
	dropped := true
	for round := 0; round < 2; round++ {
		for _, k := range e.mountKinds() {
			c, w, ok, err := e.listOnce(ctx, k)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.name, err)
			}
			dropped = dropped && ok
			if round == 0 || c < cold[k.name] {
				cold[k.name] = c
			}
			if round == 0 || w < warm[k.name] {
				warm[k.name] = w
			}
		}
	}
	note := ""
	if !dropped {
		note = "page cache not dropped: not root"
	}
	return []result{
		{issue: 3, name: "ls -lR Go src, cold mount", unit: "s", ours: cold["ours"].Seconds(),
			ref: cold["rclone"].Seconds(), refName: "rclone mount", limit: 0.5, note: note},
		{issue: 3, name: "ls -lR Go src, warm mount", unit: "s", ours: warm["ours"].Seconds(),
			ref: warm["rclone"].Seconds(), refName: "rclone mount", limit: 0.3},
		{issue: 3, name: "ls -lR Go src, warm mount vs local", unit: "s", ours: warm["ours"].Seconds(),
			ref: dLocal.Seconds(), refName: "local folder", limit: 3},
	}, nil
}

// listOnce mounts a fresh cache with the page cache dropped and times
// ls -lR cold, then the best of three warm runs; ok is false if the page
// cache could not be dropped.
func (e *env) listOnce(ctx context.Context, k mountKind) (cold, warm time.Duration, ok bool, err error) {
	cacheDir, err := e.freshCache(k.name)
	if err != nil {
		return 0, 0, false, err
	}
	defer os.RemoveAll(cacheDir)
	ok = dropCaches()
	m, err := k.mount(ctx, "gosrc", cacheDir)
	if err != nil {
		return 0, 0, ok, err
	}
	cold, err = lsLR(ctx, m.dir)
	if err == nil {
		warm, err = best(3, func() error { _, err := lsLR(ctx, m.dir); return err })
	}
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	return cold, warm, ok, err
}

// benchMountRead reads the large file through each mount: cold (fresh cache
// and mount) against curl, warm (the same file again on the same mount)
// against the same file read from local disk. The server's copy is in the
// page cache for all of them, so that cold measures the transfer, not the
// server's disk.
func benchMountRead(ctx context.Context, e *env) ([]result, error) {
	big := filepath.Join(e.root, "bench", "big.bin")
	if err := os.MkdirAll(filepath.Dir(big), 0o755); err != nil {
		return nil, err
	}
	if err := makeBigFile(big, e.bigSize); err != nil {
		return nil, err
	}
	netrc, err := e.netrcFile()
	if err != nil {
		return nil, err
	}
	curl := func() error {
		return run(ctx, "curl", "-sS", "--netrc-file", netrc, "-o", "/dev/null", "ftp://"+e.hostPort()+"/bench/big.bin")
	}
	if _, err := readAll(big, e.bigSize); err != nil {
		return nil, err
	}
	dCurl, err := best(3, curl)
	if err != nil {
		return nil, err
	}
	dLocal, err := best(3, func() error { _, err := readAll(big, e.bigSize); return err })
	if err != nil {
		return nil, err
	}
	cold, warm, again := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	for _, k := range e.mountKinds() {
		cacheDir, err := e.freshCache(k.name)
		if err != nil {
			return nil, err
		}
		// The previous mount's cache is still being written back to disk;
		// each mount starts from a clean disk. The server's copy is read
		// into the page cache again, as it was for curl: the previous
		// remounted read dropped it, and a cold mount would otherwise
		// measure the server's disk (rclone's remount reads its own cache
		// and leaves the server's file out of memory).
		exec.Command("sync").Run()
		if _, err := readAll(big, e.bigSize); err != nil {
			return nil, err
		}
		m, err := k.mount(ctx, "bench", cacheDir)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(m.dir, "big.bin")
		cold[k.name], err = readAll(path, e.bigSize)
		if err == nil {
			warm[k.name], err = best(3, func() error { _, err := readAll(path, e.bigSize); return err })
		}
		if uerr := m.unmount(); err == nil {
			err = uerr
		}
		if err == nil {
			again[k.name], err = readRemounted(ctx, k, cacheDir, e.bigSize)
		}
		os.RemoveAll(cacheDir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.name, err)
		}
	}
	dropped := dropCaches()
	dDisk, err := readAll(big, e.bigSize)
	if err != nil {
		return nil, err
	}
	note := ""
	if !dropped {
		note = "page cache not dropped: not root"
	}
	size := e.bigSize
	name := fmt.Sprintf("read %d MiB", size>>20)
	return []result{
		{issue: 3, name: name + ", cold mount", unit: "MiB/s", ours: mibps(size, cold["ours"]),
			ref: mibps(size, dCurl), refName: "curl", limit: 0.8, atLeast: true},
		{issue: 3, name: name + ", cold mount vs rclone", unit: "MiB/s", ours: mibps(size, cold["ours"]),
			ref: mibps(size, cold["rclone"]), refName: "rclone mount"},
		{issue: 3, name: name + ", warm mount", unit: "MiB/s", ours: mibps(size, warm["ours"]),
			ref: mibps(size, dLocal), refName: "local file", limit: 0.5, atLeast: true},
		{issue: 3, name: name + ", warm mount vs rclone", unit: "MiB/s", ours: mibps(size, warm["ours"]),
			ref: mibps(size, warm["rclone"]), refName: "rclone mount"},
		{issue: 3, name: name + ", remounted warm cache, no page cache", unit: "MiB/s", ours: mibps(size, again["ours"]),
			ref: mibps(size, dDisk), refName: "local disk, no page cache", note: note},
		{issue: 3, name: name + ", remounted warm cache vs rclone", unit: "MiB/s", ours: mibps(size, again["ours"]),
			ref: mibps(size, again["rclone"]), refName: "rclone mount"},
	}, nil
}

// readRemounted mounts a cache that holds the file again, with the page
// cache dropped, so that the read comes from the cache on disk: what a
// warm cache gives after a reboot.
func readRemounted(ctx context.Context, k mountKind, cacheDir string, size int64) (time.Duration, error) {
	exec.Command("sync").Run()
	dropCaches()
	m, err := k.mount(ctx, "bench", cacheDir)
	if err != nil {
		return 0, err
	}
	d, err := readAll(filepath.Join(m.dir, "big.bin"), size)
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	return d, err
}

// benchMountRSS lists a tree of 100,000 empty files (400 folders of 250)
// through a fresh mount and reads the mount process's peak RSS.
func benchMountRSS(ctx context.Context, e *env) ([]result, error) {
	const dirs, files = 400, 250
	root := filepath.Join(e.root, "many")
	if err := makeEmptyTree(root, dirs, files); err != nil {
		return nil, err
	}
	cacheDir, err := e.freshCache("rss")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cacheDir)
	m, err := e.mountOurs(ctx, "many", cacheDir)
	if err != nil {
		return nil, err
	}
	d, err := lsLR(ctx, m.dir)
	var rss float64
	if err == nil {
		_, err = lsLR(ctx, m.dir)
	}
	if err == nil {
		rss, err = peakRSS(m.pid)
	}
	if uerr := m.unmount(); err == nil {
		err = uerr
	}
	if err != nil {
		return nil, err
	}
	return []result{{issue: 3, name: fmt.Sprintf("peak RSS, ls -lR of %d files (cold %.1fs)", dirs*files, d.Seconds()),
		unit: "MiB", ours: rss, ref: 200, refName: "limit", limit: 1}}, nil
}

// makeEmptyTree creates dirs×files empty files unless the last one exists.
func makeEmptyTree(root string, dirs, files int) error {
	last := filepath.Join(root, fmt.Sprintf("d%03d", dirs-1), fmt.Sprintf("f%03d", files-1))
	if _, err := os.Stat(last); err == nil {
		return nil
	}
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for f := 0; f < files; f++ {
			p := filepath.Join(dir, fmt.Sprintf("f%03d", f))
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
