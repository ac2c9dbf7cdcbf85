package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The scenarios behind the README's comparison with rclone mount (issue
// 8). Each checks the server's folder on disk after the same steps on our
// mount and on rclone's, each on a folder of its own, both at once since
// they mostly wait. Every wait is bounded and polls at most four times a
// second, so that they load the machine little.

// task is one side of a scenario.
type task struct {
	name string
	run  func() error
}

// together runs the tasks at once and joins their errors.
func together(tasks ...task) error {
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			if err := t.run(); err != nil {
				errs <- fmt.Errorf("%s: %w", t.name, err)
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range tasks {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// waitFor checks cond every second until it holds, for at most limit, and
// says after how long it held.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) >= limit {
			return time.Since(start), false
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-time.After(time.Second):
		}
	}
}

// prepare builds our binary and writes curl's netrc before the sides run
// at once, so that they do not both write the same files.
func (e *env) prepare(ctx context.Context) (netrc string, err error) {
	if _, err := e.binary(ctx); err != nil {
		return "", err
	}
	return e.netrcFile()
}

// benchCompareServerChange: a file both mounts listed and read is replaced
// on the server by another FTP client; how long until a read through the
// mount returns the new content. Once with a 2 s interval on both sides,
// once with each tool's defaults.
func benchCompareServerChange(ctx context.Context, e *env) ([]result, error) {
	const before, after = "version 1\n", "version 2, changed on the server\n"
	const limit = 60 * time.Second
	netrc, err := e.prepare(ctx)
	if err != nil {
		return nil, err
	}
	type setup struct {
		name          string
		ours, rclone  []string
		bound, expect string
	}
	setups := []setup{
		{"short", []string{"--poll-interval", "2s"}, []string{"--dir-cache-time", "2s", "--poll-interval", "0"},
			"3s", "within 3 s (--poll-interval + 1 s)"},
		{"default", nil, nil, "31s", "within 31 s (--poll-interval + 1 s)"},
	}
	// probe is one mount watching its file.
	type probe struct {
		folder, path string
		changed      time.Time
		took         time.Duration
		seen         bool
		lastErr      error
	}
	probes := map[string]*probe{}
	for _, s := range setups {
		for _, kind := range []string{"ours", "rclone"} {
			folder := "cmp-change-" + kind + "-" + s.name
			flags := s.ours
			if kind == "rclone" {
				flags = s.rclone
			}
			sd, err := e.openSide(ctx, kind, folder, "f.txt", before, flags...)
			if err != nil {
				return nil, err
			}
			defer sd.close()
			probes[kind+"-"+s.name] = &probe{folder: folder, path: filepath.Join(sd.dir, "f.txt")}
		}
	}
	for _, p := range probes {
		if err := e.serverPut(ctx, netrc, p.folder+"/f.txt", after); err != nil {
			return nil, err
		}
		p.changed = time.Now()
	}
	for {
		waiting := 0
		for _, p := range probes {
			if p.seen || time.Since(p.changed) > limit {
				continue
			}
			waiting++
			b, err := os.ReadFile(p.path)
			p.lastErr = err
			if err == nil && string(b) == after {
				p.took, p.seen = time.Since(p.changed), true
			}
		}
		if waiting == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	outcome := func(p *probe) string {
		s := seenText(p.took, p.seen, limit)
		if !p.seen && p.lastErr != nil {
			s += fmt.Sprintf(" (last read: %v)", p.lastErr)
		}
		return s
	}
	var results []result
	for _, s := range setups {
		ours, rcl := probes["ours-"+s.name], probes["rclone-"+s.name]
		bound, _ := time.ParseDuration(s.bound)
		flags := "defaults"
		if s.name != "default" {
			flags = strings.Join(s.ours, " ") + "; rclone " + strings.Join(s.rclone, " ")
		}
		results = append(results, result{issue: 8, name: "server change read through the mount (" + flags + ")",
			behave: &behaviour{ours: outcome(ours), rclone: outcome(rcl), expect: s.expect, ok: ours.seen && ours.took <= bound}})
	}
	return results, nil
}

// benchCompareConflict: a file is written through the mount and, right
// after its close, replaced on the server by another client, before the
// mount uploads it. Afterwards the server's folder must still hold both
// versions.
func benchCompareConflict(ctx context.Context, e *env) ([]result, error) {
	const orig = "original\n"
	const local = "local version, written through the mount\n"
	const server = "server version, written by another FTP client meanwhile\n"
	netrc, err := e.prepare(ctx)
	if err != nil {
		return nil, err
	}
	// writeThenChange writes through the mount, checks that the mount has
	// not uploaded yet (else the scenario raced) and changes the server.
	writeThenChange := func(mnt, folder, disk string) error {
		if err := os.WriteFile(filepath.Join(mnt, "f.txt"), []byte(local), 0o644); err != nil {
			return fmt.Errorf("write through the mount: %w", err)
		}
		if !hasFile(disk, orig) {
			return errors.New("the server's file changed before the other client wrote it: the scenario raced")
		}
		return e.serverPut(ctx, netrc, folder+"/f.txt", server)
	}
	b := &behaviour{expect: "both kept, local as NAME.conflict-…"}
	err = together(task{"ours", func() error {
		const folder = "cmp-conflict-ours"
		sd, err := e.openSide(ctx, "ours", folder, "f.txt", orig)
		if err != nil {
			return err
		}
		defer sd.close()
		if err := writeThenChange(sd.dir, folder, filepath.Join(sd.disk, "f.txt")); err != nil {
			return err
		}
		_, code, err := e.oursRun(ctx, "unmount", sd.dir)
		if err != nil {
			return err
		}
		files, err := folderFiles(sd.disk)
		if err != nil {
			return err
		}
		desc, serverKept, localKept := whereKept(files, local, server)
		b.ours = fmt.Sprintf("%s; unmount exit %d", desc, code)
		b.ok = serverKept && localKept
		return nil
	}}, task{"rclone", func() error {
		const folder = "cmp-conflict-rclone"
		sd, err := e.openSide(ctx, "rclone", folder, "f.txt", orig)
		if err != nil {
			return err
		}
		defer sd.close()
		if err := writeThenChange(sd.dir, folder, filepath.Join(sd.disk, "f.txt")); err != nil {
			return err
		}
		dir := sd.disk
		// rclone uploads --vfs-write-back (5 s) after the close and has no
		// command that waits for it: the folder is watched for 30 s.
		took, changed := waitFor(ctx, 30*time.Second, func() bool {
			files, err := folderFiles(dir)
			return err == nil && (len(files) != 1 || files["f.txt"] != server)
		})
		how, _ := sd.rclone.stop(syscall.SIGTERM, time.Minute)
		files, err := folderFiles(dir)
		if err != nil {
			return err
		}
		desc, _, _ := whereKept(files, local, server)
		when := fmt.Sprintf("folder unchanged for %s", took.Round(time.Second))
		if changed {
			when = fmt.Sprintf("uploaded after %.0f s", took.Seconds())
		}
		b.rclone = fmt.Sprintf("%s (%s); SIGTERM: %s", desc, when, how)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return []result{{issue: 8, name: "file changed on both sides before the upload", behave: b}}, nil
}
