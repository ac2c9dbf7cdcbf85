package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Issue 8's scenarios about uploads that have not happened yet when the
// mount stops, is refused by the server or is killed.

const pendingContent = "written just before the stop\n"

// pendingSide mounts an empty folder with kind, lists it and writes
// new.txt through the mount; it returns where new.txt belongs on the
// server's disk. The caller stops the mount.
func (e *env) pendingSide(ctx context.Context, kind, folder string) (*side, string, error) {
	sd, err := e.openSide(ctx, kind, folder, "", "")
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(sd.dir, "new.txt"), []byte(pendingContent), 0o644); err != nil {
		sd.close()
		return nil, "", err
	}
	return sd, filepath.Join(sd.disk, "new.txt"), nil
}

// rcloneNextRun starts rclone again on the same cache, which its
// documentation says uploads what an earlier run left, and says whether
// disk gets the pending file within wait.
func (e *env) rcloneNextRun(ctx context.Context, folder, cacheDir, name, disk string, wait time.Duration) (string, error) {
	p, err := e.startRclone(ctx, folder, cacheDir, name)
	if err != nil {
		return "", err
	}
	defer p.cleanup()
	took, seen := waitFor(ctx, wait, func() bool { return hasFile(disk, pendingContent) })
	how, _ := p.stop(syscall.SIGTERM, time.Minute)
	if !seen && hasFile(disk, pendingContent) {
		return fmt.Sprintf("next run on the same cache: uploaded at its SIGTERM (%s)", how), nil
	}
	return "next run on the same cache: uploaded " + seenText(took, seen, wait), nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// benchCompareStopPending: a file is written and the mount stopped at
// once, by each tool's unmount command and by SIGTERM; is the file on the
// server when the stop has returned (for a signal: when the process ended).
func benchCompareStopPending(ctx context.Context, e *env) ([]result, error) {
	if _, err := e.prepare(ctx); err != nil {
		return nil, err
	}
	cmd := &behaviour{expect: "on the server when unmount returns, exit 0"}
	term := &behaviour{expect: "on the server when the process ends"}
	err := together(task{"ours unmount", func() error {
		sd, disk, err := e.pendingSide(ctx, "ours", "cmp-stop-ours-unmount")
		if err != nil {
			return err
		}
		defer sd.close()
		m := sd.ours
		start := time.Now()
		_, code, err := e.oursRun(ctx, "unmount", m.dir)
		if err != nil {
			return err
		}
		there := hasFile(disk, pendingContent)
		cmd.ours = fmt.Sprintf("`unmount` (%.1f s, exit %d): on the server %s", time.Since(start).Seconds(), code, yesNo(there))
		cmd.ok = there && code == 0
		return nil
	}}, task{"ours SIGTERM", func() error {
		sd, disk, err := e.pendingSide(ctx, "ours", "cmp-stop-ours-term")
		if err != nil {
			return err
		}
		defer sd.close()
		m := sd.ours
		start := time.Now()
		if err := syscall.Kill(m.pid, syscall.SIGTERM); err != nil {
			return err
		}
		ended := "ended"
		if err := waitExit(m.pid, time.Minute); err != nil {
			ended = "still running after 1 min"
		}
		there := hasFile(disk, pendingContent)
		term.ours = fmt.Sprintf("%s after %.1f s: on the server %s", ended, time.Since(start).Seconds(), yesNo(there))
		term.ok = there && ended == "ended"
		return nil
	}}, task{"rclone fusermount3 -u", func() error {
		const folder = "cmp-stop-rclone-unmount"
		sd, disk, err := e.pendingSide(ctx, "rclone", folder)
		if err != nil {
			return err
		}
		defer sd.close()
		p, cacheDir := sd.rclone, sd.cacheDir
		start := time.Now()
		umount := "returned"
		if out, err := exec.CommandContext(ctx, "fusermount3", "-u", p.dir).CombinedOutput(); err != nil {
			umount = fmt.Sprintf("failed: %v %s", err, strings.TrimSpace(string(out)))
		}
		atReturn := hasFile(disk, pendingContent)
		took := time.Since(start)
		how := p.wait(time.Minute)
		cmd.rclone = fmt.Sprintf("`fusermount3 -u` %s (%.1f s): on the server %s; rclone %s after %.1f s: on the server %s",
			umount, took.Seconds(), yesNo(atReturn), how, time.Since(start).Seconds(), yesNo(hasFile(disk, pendingContent)))
		next, err := e.rcloneNextRun(ctx, folder, cacheDir, folder+"-again", disk, 30*time.Second)
		cmd.rclone += "; " + next
		return err
	}}, task{"rclone SIGTERM", func() error {
		const folder = "cmp-stop-rclone-term"
		sd, disk, err := e.pendingSide(ctx, "rclone", folder)
		if err != nil {
			return err
		}
		defer sd.close()
		p, cacheDir := sd.rclone, sd.cacheDir
		how, took := p.stop(syscall.SIGTERM, time.Minute)
		term.rclone = fmt.Sprintf("%s after %.1f s: on the server %s", how, took.Seconds(), yesNo(hasFile(disk, pendingContent)))
		next, err := e.rcloneNextRun(ctx, folder, cacheDir, folder+"-again", disk, 30*time.Second)
		term.rclone += "; " + next
		return err
	}})
	if err != nil {
		return nil, err
	}
	return []result{
		{issue: 8, name: "stop at once after a write: unmount command (rclone: fusermount3 -u, its --daemon way)", behave: cmd},
		{issue: 8, name: "stop at once after a write: SIGTERM (rclone: its foreground way)", behave: term},
	}, nil
}

// benchCompareRefused: after the mount listed its folder, the folder is
// made read-only on the server's disk, so that the FTP user's upload is
// refused; a file written through the mount must not be lost silently.
// Then the folder is made writable again and the same cache mounted again.
func benchCompareRefused(ctx context.Context, e *env) ([]result, error) {
	if _, err := e.prepare(ctx); err != nil {
		return nil, err
	}
	const wait = 30 * time.Second
	b := &behaviour{expect: "unmount non-zero naming the file, status shows the error, the next mount uploads it"}
	err := together(task{"ours", func() error {
		const folder = "cmp-refuse-ours"
		sd, err := e.openSide(ctx, "ours", folder, "", "")
		if err != nil {
			return err
		}
		defer sd.close()
		m, disk, cacheDir := sd.ours, sd.disk, sd.cacheDir
		defer os.Chmod(disk, 0o755)
		if err := os.Chmod(disk, 0o555); err != nil {
			return err
		}
		werr := os.WriteFile(filepath.Join(m.dir, "new.txt"), []byte(pendingContent), 0o644)
		if werr != nil {
			b.ours = fmt.Sprintf("the writer got %v", werr)
			b.ok = true // told at once: nothing to lose later
			return nil
		}
		var statusErr string
		took, shown := waitFor(ctx, wait, func() bool {
			out, _, err := e.oursRun(ctx, "status", m.dir)
			_, errs, found := strings.Cut(out, "last errors:")
			statusErr = strings.TrimSpace(errs)
			return err == nil && found && strings.Contains(statusErr, "new.txt")
		})
		out, code, err := e.oursRun(ctx, "unmount", m.dir)
		if err != nil {
			return err
		}
		named := code != 0 && strings.Contains(out, "new.txt")
		refused := !hasFile(filepath.Join(disk, "new.txt"), pendingContent)
		stillMounted, _ := isMounted(m.dir)
		cleanupOurs(m)
		if err := os.Chmod(disk, 0o755); err != nil {
			return err
		}
		m2, err := e.mountOursNamed(ctx, folder, cacheDir, folder+"-again")
		if err != nil {
			return err
		}
		defer cleanupOurs(m2)
		_, code2, err := e.oursRun(ctx, "unmount", m2.dir)
		if err != nil {
			return err
		}
		later := hasFile(filepath.Join(disk, "new.txt"), pendingContent)
		status := fmt.Sprintf("no error in status within %.0f s", wait.Seconds())
		if shown {
			status = fmt.Sprintf("status shows it after %.0f s", took.Seconds())
		}
		b.ours = fmt.Sprintf("close ok; %s; unmount exit %d, names the file %s; next mount (writable) uploads it: %s (exit %d)",
			status, code, yesNo(named), yesNo(later), code2)
		if stillMounted {
			b.ours += "; still mounted after unmount"
		}
		b.ok = shown && named && refused && !stillMounted && later && code2 == 0
		return nil
	}}, task{"rclone", func() error {
		const folder = "cmp-refuse-rclone"
		sd, err := e.openSide(ctx, "rclone", folder, "", "")
		if err != nil {
			return err
		}
		defer sd.close()
		p, disk, cacheDir := sd.rclone, sd.disk, sd.cacheDir
		defer os.Chmod(disk, 0o755)
		if err := os.Chmod(disk, 0o555); err != nil {
			return err
		}
		if werr := os.WriteFile(filepath.Join(p.dir, "new.txt"), []byte(pendingContent), 0o644); werr != nil {
			b.rclone = fmt.Sprintf("the writer got %v", werr)
			return nil
		}
		took, logged := waitFor(ctx, wait, func() bool { return p.logLine("ERROR", "new.txt") != "" })
		how, _ := p.stop(syscall.SIGTERM, time.Minute)
		p.cleanup()
		if err := os.Chmod(disk, 0o755); err != nil {
			return err
		}
		next, err := e.rcloneNextRun(ctx, folder, cacheDir, folder+"-again", filepath.Join(disk, "new.txt"), wait)
		if err != nil {
			return err
		}
		logText := fmt.Sprintf("no ERROR line about it in its log within %.0f s", wait.Seconds())
		if logged {
			logText = fmt.Sprintf("ERROR in its log after %.0f s", took.Seconds())
		}
		b.rclone = fmt.Sprintf("close ok; %s; SIGTERM: %s; folder writable again, %s", logText, how, next)
		return nil
	}})
	if err != nil {
		return nil, err
	}
	return []result{{issue: 8, name: "upload refused by the server (folder made read-only on its disk)", behave: b}}, nil
}

// benchCompareKill9: a file is written, the mount process killed with
// SIGKILL before it uploads, and the same cache mounted again: the file
// must reach the server.
func benchCompareKill9(ctx context.Context, e *env) ([]result, error) {
	if _, err := e.prepare(ctx); err != nil {
		return nil, err
	}
	const wait = 30 * time.Second
	b := &behaviour{expect: "the next mount of the cache uploads it"}
	err := together(task{"ours", func() error {
		const folder = "cmp-kill-ours"
		sd, disk, err := e.pendingSide(ctx, "ours", folder)
		if err != nil {
			return err
		}
		defer sd.close()
		m, cacheDir := sd.ours, sd.cacheDir
		if hasFile(disk, pendingContent) {
			return fmt.Errorf("uploaded before the kill: the scenario raced")
		}
		if err := syscall.Kill(m.pid, syscall.SIGKILL); err != nil {
			return err
		}
		cleanupOurs(m)
		m2, err := e.mountOursNamed(ctx, folder, cacheDir, folder+"-again")
		if err != nil {
			return err
		}
		defer cleanupOurs(m2)
		took, seen := waitFor(ctx, wait, func() bool { return hasFile(disk, pendingContent) })
		_, code, err := e.oursRun(ctx, "unmount", m2.dir)
		if err != nil {
			return err
		}
		there := hasFile(disk, pendingContent)
		b.ours = fmt.Sprintf("next mount on the same cache: uploaded %s; on the server after its unmount (exit %d): %s",
			seenText(took, seen, wait), code, yesNo(there))
		b.ok = there
		return nil
	}}, task{"rclone", func() error {
		const folder = "cmp-kill-rclone"
		sd, disk, err := e.pendingSide(ctx, "rclone", folder)
		if err != nil {
			return err
		}
		defer sd.close()
		p, cacheDir := sd.rclone, sd.cacheDir
		if hasFile(disk, pendingContent) {
			return fmt.Errorf("uploaded before the kill: the scenario raced")
		}
		p.kill9()
		next, err := e.rcloneNextRun(ctx, folder, cacheDir, folder+"-again", disk, wait)
		b.rclone = next
		return err
	}})
	if err != nil {
		return nil, err
	}
	return []result{{issue: 8, name: "kill -9 with an upload pending, then mount the same cache", behave: b}}, nil
}
