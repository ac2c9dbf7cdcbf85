package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/fs"
	"github.com/ftpsync-mount/ftpsync-mount/sync"
)

// mountMemoryLimit is the mount process's soft memory limit.
const mountMemoryLimit = 150 << 20

// daemonEnv marks the re-executed child of mount --daemon; its value is the
// number of the inherited file descriptor to report readiness on.
const daemonEnv = "FTPSYNC_MOUNT_DAEMON_READY_FD"

// mountFlags are the mount command's options.
type mountFlags struct {
	target       targetFlags
	cacheDir     string
	cacheMaxSize string
	dirCacheTime time.Duration
	readOnly     bool
	allowOther   bool
	nonEmpty     bool // --allow-non-empty
	daemon       bool
	writeBack    time.Duration
	transfers    int
	fsync        string
	appendUpload bool
	metricsAddr  string
	pollInterval time.Duration
	resolve      string

	// logToCache sends the log to mount.log in the cache directory: set for
	// the --daemon child when no --log-file was given, whose standard error
	// goes nowhere. logPath is then that file.
	logToCache bool
	logPath    string
}

func newMountCmd(g *globalOptions) *cobra.Command {
	mf := &mountFlags{}
	cmd := &cobra.Command{
		Use:   "mount REMOTE MOUNTPOINT",
		Short: "Mount a remote FTP folder",
		Long: `mount presents the remote folder under MOUNTPOINT, served from a local cache
that survives restarts. It runs in the foreground until Ctrl-C, SIGTERM or
'ftpsync-mount unmount MOUNTPOINT'; --daemon returns once the mount is ready.

Changes complete in the cache at local speed and are uploaded in the
background, --write-back after a file was last closed (during a burst of
changes such as tar x, once it pauses), in the order they were made.
Unmounting (also fusermount -u, umount, Ctrl-C) uploads what is
pending first; a second Ctrl-C exits at once and keeps the queue for the
next mount of the same cache. A file changed on the server meanwhile is
never overwritten: the local version is kept beside it as
NAME.conflict-YYYYMMDD-HHMMSS.EXT. 'ftpsync-mount status' shows the queue.`,
		Example: `  ftpsync-mount mount ftp://alice@files.example.com/site ~/site
  ftpsync-mount mount --daemon --cache-max-size 5G ftp://alice@host/ ~/site`,
		Args: exactArgs(2, "ftpsync-mount mount REMOTE MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mf.daemon && os.Getenv(daemonEnv) == "" {
				// Refuse what cannot work here, so that the exit status
				// says what kind of error it was.
				if _, _, err := mf.check(); err != nil {
					return err
				}
				return startDaemon(cmd, args)
			}
			ready, err := readyPipe()
			if err != nil {
				return err
			}
			mf.logToCache = ready.f != nil && g.logFile == ""
			err = runMount(cmd.Context(), g, mf, args[0], args[1], func() { ready.ok(mf.logPath); notifyReady(g.log) })
			if err != nil {
				ready.fail(err)
			}
			return err
		},
	}
	f := cmd.Flags()
	mf.target.register(f)
	registerMetricsFlag(f, &mf.metricsAddr)
	f.StringVar(&mf.cacheDir, "cache-dir", "", "keep the cache here (default $XDG_CACHE_HOME/ftpsync-mount/<remote>)")
	f.StringVar(&mf.cacheMaxSize, "cache-max-size", "0", "evict least recently used file content beyond this size, like 500M or 10G (0: no limit)")
	f.DurationVar(&mf.dirCacheTime, "dir-cache-time", 5*time.Minute, "list a directory from the server again when its listing is older than this")
	f.BoolVar(&mf.readOnly, "read-only", false, "refuse writes")
	f.DurationVar(&mf.writeBack, "write-back", 2*time.Second, "upload a file this long after it was last closed")
	f.IntVar(&mf.transfers, "transfers", 4, "run this many uploads and other server changes at once")
	f.BoolVar(&mf.appendUpload, "append-uploads", false, "upload a file that only grew by appending the new part (others can then see it grow)")
	f.StringVar(&mf.fsync, "fsync", "local", "what fsync waits for: local (the cache on disk) or upload (the server; EIO if it cannot get there)")
	f.BoolVar(&mf.allowOther, "allow-other", false, "let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	f.BoolVar(&mf.nonEmpty, "allow-non-empty", false, "mount on a folder that is not empty, or where something else is mounted, hiding what is there until the unmount")
	f.BoolVar(&mf.daemon, "daemon", false, "run in the background once the mount is ready")
	f.DurationVar(&mf.pollInterval, "poll-interval", 30*time.Second, "list the folders used recently this often to see changes made on the server (0: only when --dir-cache-time expires)")
	f.StringVar(&mf.resolve, "resolve", "keep-both", "settle a file changed here and on the server: keep-both, local, remote, new or old")
	return cmd
}

// runMount mounts and serves until ctx ends, a signal arrives or the mount
// point is unmounted from outside; ready is called once the kernel has the
// mount.
func runMount(ctx context.Context, g *globalOptions, mf *mountFlags, remote, mountpoint string, ready func()) error {
	// A mount keeps a node per file the kernel has seen; with the collector's
	// default the heap doubles past what is live before it runs. A soft
	// limit keeps a 100,000-file tree well under 200 MiB resident (the
	// collector works harder near it, never fails). GOMEMLIMIT wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(mountMemoryLimit)
	}
	stopProfile, err := startCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	maxSize, resolve, err := mf.check()
	if err != nil {
		return err
	}
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", mountpoint, err)
	}
	if err := checkMountpoint(mountpoint, mp, mf.nonEmpty); err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	tgt, err := openTargetOrOffline(ctx, g, mf, remote)
	if err != nil {
		return err
	}
	defer tgt.Close()
	tgt, reg := withMetrics(mf.metricsAddr, tgt)
	// Badger creates its files with the umask's mode, also later ones (new
	// value-log files); the cache holds the user's files and stays private.
	// The mount process creates nothing else while it runs.
	defer syscall.Umask(syscall.Umask(0o077))
	dir := mf.cacheDir
	if dir == "" {
		dir = xdgDir("XDG_CACHE_HOME", ".cache", "ftpsync-mount", cacheName(tgt.ID()))
	}
	c, err := cache.Open(cache.Options{Dir: dir, MaxSize: maxSize, Log: g.log})
	if err != nil {
		return unwritableHint(err, "--cache-dir")
	}
	defer c.Close()
	mountGauges(reg, c)
	stopMetrics, err := startMetrics(mf.metricsAddr, reg, g.log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if mf.logToCache {
		mf.logPath = filepath.Join(dir, "mount.log")
		f, err := os.OpenFile(mf.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open the log %s: %w", mf.logPath, err)
		}
		g.log.SetOutput(f)
		g.logOut = f
	}
	notifier := fs.NewNotifier(g.log)
	defer notifier.Close()
	fetcher, err := sync.NewFetcher(sync.FetchOptions{Target: tgt, Cache: c, Log: g.log, Timeout: mf.target.timeout,
		CacheHits:   reg.Counter("ftpsync_cache_hits_total", "Blocks read from memory or the cache."),
		CacheMisses: reg.Counter("ftpsync_cache_misses_total", "Blocks that had to be fetched from the server."),
	})
	if err != nil {
		return err
	}
	defer fetcher.Close()
	lister, err := sync.NewLister(sync.ListOptions{
		Target: tgt, Cache: c, Log: g.log, DirCacheTime: mf.dirCacheTime,
		Prefetch: max(1, mf.target.connections-1), OnChange: notifier.Changed,
		PollInterval: mf.pollInterval, RecordKept: resolve == sync.ResolveKeepBoth,
		PollRounds:   reg.Counter("ftpsync_poll_rounds_total", "Rounds of the poller that lists recently used folders again."),
		PollListings: reg.Counter("ftpsync_poll_listings_total", "Folders the poller listed again."),
	})
	if err != nil {
		return err
	}
	defer lister.Close()

	var wb *sync.Writeback
	var ctrl *controlServer
	if !mf.readOnly {
		wb, err = sync.NewWriteback(sync.WritebackOptions{
			Target: tgt, Cache: c, Log: g.log, Delay: mf.writeBack, Transfers: mf.transfers, OnChange: notifier.Changed,
			AppendUploads: mf.appendUpload, Resolve: resolve,
			Conflicts: reg.Counter("ftpsync_conflicts_total", "Conflicts the write-back settled by keeping both versions."),
		})
		if err != nil {
			return err
		}
		defer wb.Close()
	}
	if ctrl, err = listenControl(dir, g.log); err != nil {
		return err
	}

	fo := fs.Options{
		Cache: c, Fetcher: fetcher, Lister: lister, Notifier: notifier, Log: g.log,
		ReadOnly: mf.readOnly, Writeback: wb, FsyncUpload: mf.fsync == "upload",
		AllowOther: mf.allowOther, FsName: tgt.String(), Debug: g.log.IsLevelEnabled(logrus.TraceLevel),
	}
	fo.ControlSocket = ctrl.path
	server, err := fs.Mount(mp, fo)
	if err != nil {
		ctrl.close()
		return fmt.Errorf("mount %s on %s: %w", tgt, mp, err)
	}
	mode := ""
	if mf.readOnly {
		mode = " read-only"
	}
	g.log.WithField("cache", dir).Infof("mounted %s on %s%s", tgt, mp, mode)
	fin := &finalFlush{done: make(chan struct{})}
	ctrl.status = func() mountStatus { return statusOf(mp, tgt.String(), dir, c, wb) }
	ctrl.flush = func(ctx context.Context) error {
		if wb == nil {
			return nil // read-only: nothing is ever queued
		}
		return wb.Flush(ctx)
	}
	ctrl.unmnt = func(ctx context.Context) error {
		// Upload first with the mount still there, so that progress
		// shows; then detach, and the exit flush sends what came since.
		ctrl.flush(ctx)
		if err := server.Unmount(); err != nil {
			return fmt.Errorf("%s is busy (%v): close the files and shells using it and try again", mp, err)
		}
		select {
		case <-fin.done:
			return fin.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctrl.refresh = func(ctx context.Context, p string, recursive bool) (string, error) {
		return refreshPath(ctx, c, lister, notifier, p, recursive)
	}
	ctrl.resolve = func(ctx context.Context, p, keep string) (string, error) {
		if mf.readOnly {
			return "", fmt.Errorf("the mount is read-only: remount it writable to resolve conflicts")
		}
		return resolvePath(ctx, c, lister, notifier, p, keep)
	}
	go ctrl.serve()
	ready()
	err = serveUntilDone(ctx, g, server, mp, c, wb)
	fin.err = err
	close(fin.done)
	ctrl.close()
	return err
}

// check refuses flag values that cannot work, as usage errors, and
// returns the cache size limit and how conflicts are settled.
func (mf *mountFlags) check() (maxSize int64, resolve sync.Resolution, err error) {
	maxSize, err = parseSize(mf.cacheMaxSize)
	if err != nil {
		return 0, 0, &usageError{msg: fmt.Sprintf("--cache-max-size: %v", err)}
	}
	if mf.fsync != "" && mf.fsync != "local" && mf.fsync != "upload" {
		return 0, 0, &usageError{msg: fmt.Sprintf("--fsync %q: use local or upload", mf.fsync)}
	}
	if mf.transfers < 0 {
		return 0, 0, &usageError{msg: "--transfers must be at least 1"}
	}
	if resolve, err = mountResolution(mf.resolve); err != nil {
		return 0, 0, err
	}
	if mf.pollInterval < 0 {
		return 0, 0, &usageError{msg: "--poll-interval must not be negative (0 turns the poller off)"}
	}
	return maxSize, resolve, nil
}

// finalFlush is the outcome of the flush at exit, for an unmount request
// waiting on the status socket.
type finalFlush struct {
	done chan struct{} // closed once err is set
	err  error
}

// serveUntilDone waits for an outside unmount, or unmounts on SIGINT or
// SIGTERM (or ctx's end). A busy mount point is reported and left mounted;
// a second signal detaches it lazily. Once unmounted, everything pending is
// uploaded before it returns (exitFlush).
func serveUntilDone(ctx context.Context, g *globalOptions, server *fuse.Server, mp string, c *cache.Cache, wb *sync.Writeback) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	go func() {
		server.Wait()
		close(done)
	}()
	stops := 0
	for {
		select {
		case <-done:
			g.log.Infof("unmounted %s", mp)
			c.ReleaseAll()
			return exitFlush(g, wb, sig)
		case <-ctx.Done():
		case <-sig:
		}
		stops++
		if stops > 1 {
			g.log.Warnf("detaching %s lazily: it disappears once nothing uses it", mp)
			if err := lazyUnmount(mp); err != nil {
				return fmt.Errorf("unmount %s: %w", mp, err)
			}
			<-done
			c.ReleaseAll()
			return exitFlush(g, wb, sig)
		}
		if err := server.Unmount(); err != nil {
			g.log.WithError(err).Warnf("%s is busy: close the files and shells using it, or stop again to detach it lazily", mp)
		}
		ctx = context.Background() // a cancelled ctx must not spin the loop
	}
}

func lazyUnmount(mp string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", mp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cacheName turns a target ID into a safe, readable directory name; a hash
// keeps distinct IDs distinct after the unsafe characters are replaced.
func cacheName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := strings.Trim(b.String(), "_.")
	if len(name) > 80 {
		name = name[:80]
	}
	sum := sha256.Sum256([]byte(id))
	return name + "-" + hex.EncodeToString(sum[:4])
}

// parseSize reads sizes like 0, 512K, 500M, 10G, 1T, 1.5G (powers of 1024)
// or a plain number of bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v*float64(mult) > float64(1<<62) {
		return 0, fmt.Errorf("%q is not a size; use a number with an optional K, M, G or T suffix, like 10G", s)
	}
	return int64(v * float64(mult)), nil
}

// readiness reports to the parent of mount --daemon whether the mount is
// ready; outside a daemon child it does nothing.
type readiness struct{ f *os.File }

// readyPipe opens the pipe inherited from the --daemon parent, if any.
func readyPipe() (*readiness, error) {
	v := os.Getenv(daemonEnv)
	if v == "" {
		return &readiness{}, nil
	}
	os.Unsetenv(daemonEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: not a file descriptor", daemonEnv, v)
	}
	return &readiness{f: os.NewFile(uintptr(fd), "ready")}, nil
}

// ok reports the mount ready, and where the daemon logs (if it chose).
func (r *readiness) ok(logPath string) {
	if r.f != nil {
		fmt.Fprintln(r.f, strings.TrimSpace("ok "+logPath))
		r.f.Close()
		r.f = nil
	}
}

func (r *readiness) fail(err error) {
	if r.f != nil {
		fmt.Fprintln(r.f, strings.ReplaceAll(err.Error(), "\n", " "))
		r.f.Close()
		r.f = nil
	}
}

// startDaemon re-executes this program with the same arguments in a new
// session and waits until the child reports the mount ready or fails.
func startDaemon(cmd *cobra.Command, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--daemon: find this program: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("--daemon: %w", err)
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return fmt.Errorf("--daemon: %w", err)
	}
	defer devnull.Close()
	child := exec.Command(self, os.Args[1:]...)
	child.Env = append(os.Environ(), daemonEnv+"=3")
	child.ExtraFiles = []*os.File{w}
	child.Stdin, child.Stdout, child.Stderr = devnull, devnull, devnull
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		w.Close()
		return fmt.Errorf("--daemon: start the mount process: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if logPath, ok := strings.CutPrefix(line, "ok"); ok && (logPath == "" || logPath[0] == ' ') {
		fmt.Fprintf(cmd.OutOrStdout(), "mounted %s on %s (pid %d)\n", args[0], args[1], child.Process.Pid)
		if logPath = strings.TrimSpace(logPath); logPath != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "log: %s\n", logPath)
		}
		child.Process.Release()
		return nil
	}
	werr := child.Wait()
	if line == "" {
		return fmt.Errorf("the mount process ended before the mount was ready (%v); run without --daemon to see why", werr)
	}
	return errors.New(line)
}

func newUnmountCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "unmount MOUNTPOINT",
		Short: "Upload what is pending, then unmount an ftpsync-mount mount point",
		Long: `unmount uploads every pending change, showing progress, then detaches the
mount. It exits non-zero naming what could not be uploaded; that stays
queued and is uploaded by the next mount of the same cache.`,
		Example: `  ftpsync-mount unmount ~/site
  ftpsync-mount unmount ~/site || ftpsync-mount status ~/site   # what stayed queued`,
		Args: exactArgs(1, "ftpsync-mount unmount MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			ok, err := isOurMount(mp)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s is not an ftpsync-mount mount point", args[0])
			}
			if hasControl(mp) {
				// The mount process uploads, detaches and uploads what came
				// since; this command shows progress and its outcome, then
				// waits for the process to close its cache, so that a
				// script (or systemd) may use the cache dir right after.
				pid := 0
				askControl(mp, "status", func(r controlReply) error {
					if r.Status != nil {
						pid = r.Status.PID
					}
					return nil
				})
				err := askControl(mp, "unmount", progressPrinter(cmd.ErrOrStderr(), "unmount "+args[0]))
				if pid > 0 && !waitExit(pid, exitWait) {
					g.log.Warnf("the mount process %d has not exited %s after the unmount", pid, exitWait)
				}
				return err
			}
			if err := unmount(mp); err != nil {
				return fmt.Errorf("unmount %s: %w", args[0], err)
			}
			g.log.Infof("unmounted %s", mp)
			return nil
		},
	}
}

// unmount asks the kernel to unmount; the mount process sees it and exits.
func unmount(mp string) error {
	if os.Geteuid() == 0 {
		err := syscall.Unmount(mp, 0)
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("%w: close the files and shells using it and try again", err)
		}
		return err
	}
	out, err := exec.Command("fusermount3", "-u", mp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
