package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/sync"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// oneshotOptions are the flags of sync, upload and download.
type oneshotOptions struct {
	mode            sync.Mode
	dryRun          bool
	match, exclude  []string
	parallel        int
	progress        bool
	verbose, quiet  bool
	caseMode        string
	resolve         string
	reportProblems  bool
	stateDir        string
	del, delUnmatch bool
	force           bool
	tf              targetFlags
	metricsAddr     string
}

func newSyncCmd(g *globalOptions) *cobra.Command {
	return newOneshotCmd(g, sync.ModeSync, "sync LOCAL REMOTE",
		"Two-way sync of a local folder and a remote one (pyftpsync sync)",
		`sync makes LOCAL and REMOTE agree. A file changed on one side since the last
sync is copied to the other; a file deleted on one side is deleted on the
other if it did not change there. A file changed on both sides is a conflict,
settled by --resolve: ask (on a terminal; skip otherwise), local, remote, new
(the newer file wins), old, skip, or keep-both (the remote version keeps the
name, the local one is saved beside it as NAME.conflict-YYYYMMDD-HHMMSS.EXT on
both sides).

The state of the last sync lives outside both folders (--state-dir). On the
first run, pyftpsync's .pyftpsync-meta.json files are read as that state.
Each side is a local folder or an ftp://, ftps:// or ftpes:// URL.`)
}

func newUploadCmd(g *globalOptions) *cobra.Command {
	return newOneshotCmd(g, sync.ModeUpload, "upload LOCAL REMOTE",
		"Copy new and changed local files to the remote folder (pyftpsync upload)",
		`upload copies what is new or changed in LOCAL to REMOTE. A remote file that
changed since the last sync is left alone unless --force or --resolve=local;
--delete removes remote files that LOCAL no longer has, --delete-unmatched
also those the filters exclude.`)
}

func newDownloadCmd(g *globalOptions) *cobra.Command {
	return newOneshotCmd(g, sync.ModeDownload, "download LOCAL REMOTE",
		"Copy new and changed remote files to the local folder (pyftpsync download)",
		`download copies what is new or changed in REMOTE to LOCAL. A local file that
changed since the last sync is left alone unless --force or --resolve=remote;
--delete removes local files that REMOTE no longer has, --delete-unmatched
also those the filters exclude.`)
}

func newOneshotCmd(g *globalOptions, mode sync.Mode, use, short, long string) *cobra.Command {
	o := &oneshotOptions{mode: mode}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Example: fmt.Sprintf(`  ftpsync-mount %[1]s ./site ftp://alice@files.example.com/site --dry-run
  ftpsync-mount %[1]s ./site ftpes://alice@files.example.com/site --exclude '**/*.log,build/'`, mode),
		Args: exactArgs(2, mode.String()+" needs a local and a remote side: ftpsync-mount "+use),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOneshot(cmd, g, o, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.dryRun, "dry-run", "n", false, "print what would be done; change nothing and write no state")
	f.StringSliceVar(&o.match, "match", nil, "only sync files matching these globs, comma-separated or repeated ('*.html', 'docs/**/*.md')")
	f.StringSliceVar(&o.exclude, "exclude", nil, "skip files and folders matching these globs ('**/*.log', 'build/', bare names)")
	f.IntVar(&o.parallel, "parallel", 4, "transfers and listings in parallel")
	f.BoolVar(&o.progress, "progress", false, "show progress (a redrawn line on a terminal, plain lines otherwise)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "also print paths that need nothing")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print only errors")
	f.StringVar(&o.caseMode, "case", "strict", "names that differ only in case: strict (report them), local or remote (rename to that side's name)")
	f.BoolVar(&o.reportProblems, "report-problems", false, "exit with status 10 if conflicts or problems were left unresolved")
	f.StringVar(&o.stateDir, "state-dir", "", "where the last-synced state lives (default $XDG_STATE_HOME/ftpsync-mount/sync/<hash of both sides>)")
	if mode == sync.ModeSync {
		f.StringVar(&o.resolve, "resolve", "ask", "settle conflicts: ask, local, remote, new, old, skip or keep-both (ask without a terminal skips)")
	} else {
		src := "local"
		if mode == sync.ModeDownload {
			src = "remote"
		}
		f.StringVar(&o.resolve, "resolve", "ask", "settle conflicts: ask, "+src+" or skip (ask without a terminal skips)")
		f.BoolVar(&o.del, "delete", false, "remove what the source no longer has")
		f.BoolVar(&o.delUnmatch, "delete-unmatched", false, "with --delete, also remove what the filters exclude (implies --delete)")
		f.BoolVar(&o.force, "force", false, "overwrite the destination even where it changed since the last sync")
	}
	o.tf.register(f)
	registerMetricsFlag(f, &o.metricsAddr)
	return cmd
}

// engineOptions checks the flags and builds the engine's options.
func (o *oneshotOptions) engineOptions() (sync.Options, error) {
	if o.quiet && o.verbose {
		return sync.Options{}, &usageError{msg: "-q and -v contradict each other; give one"}
	}
	if o.parallel < 1 || o.parallel > 64 {
		return sync.Options{}, &usageError{msg: fmt.Sprintf("--parallel %d: give 1 to 64", o.parallel)}
	}
	res, err := sync.ParseResolution(o.resolve)
	if err != nil {
		return sync.Options{}, &usageError{msg: err.Error()}
	}
	if !o.mode.Allowed(res) {
		return sync.Options{}, &usageError{msg: fmt.Sprintf("--resolve %s does not fit %s: the destination can only be overwritten by the source or left alone", res, o.mode)}
	}
	cm, err := sync.ParseCaseMode(o.caseMode)
	if err != nil {
		return sync.Options{}, &usageError{msg: err.Error()}
	}
	filter, err := sync.NewFilter(o.match, o.exclude)
	if err != nil {
		return sync.Options{}, &usageError{msg: err.Error()}
	}
	return sync.Options{
		Mode: o.mode, DryRun: o.dryRun, Delete: o.del || o.delUnmatch, DeleteUnmatched: o.delUnmatch,
		Force: o.force, Resolve: res, Filter: filter, Case: cm, Parallel: o.parallel, Verbose: o.verbose,
	}, nil
}

func runOneshot(cmd *cobra.Command, g *globalOptions, o *oneshotOptions, localSpec, remoteSpec string) error {
	opts, err := o.engineOptions()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second Ctrl-C ends the process at once.
		<-ctx.Done()
		stop()
	}()
	out := cmd.OutOrStdout()
	local, err := openTarget(ctx, g, &o.tf, localSpec)
	if err != nil {
		return aborted(ctx, err)
	}
	defer local.Close()
	remote, err := openTarget(ctx, g, &o.tf, remoteSpec)
	if err != nil {
		return aborted(ctx, err)
	}
	defer remote.Close()
	remote, reg := withMetrics(o.metricsAddr, remote)
	stopMetrics, err := startMetrics(o.metricsAddr, reg, g.log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	store, err := o.openStore(g, local, remote)
	if err != nil {
		return err
	}
	if store != nil {
		defer func() {
			if err := store.Close(); err != nil {
				g.log.WithError(err).Warn("closing the state store")
			}
		}()
	}
	opts.Store, opts.Log = store, g.log
	if !o.quiet {
		opts.Out = out
	}
	if opts.Resolve == sync.ResolveAsk && isTerminal(os.Stdin) && !o.dryRun {
		opts.Asker = sync.NewPromptAsker(os.Stdin, cmd.ErrOrStderr())
	}
	if o.progress && !o.quiet {
		opts.Progress = sync.NewProgress(cmd.ErrOrStderr(), isTerminal(os.Stderr))
		opts.Progress.Start()
	}
	if o.dryRun && !o.quiet {
		fmt.Fprintf(out, "dry run: %s %s and %s; nothing is changed\n", o.mode, local, remote)
	}
	sum, err := sync.Run(ctx, local, remote, opts)
	opts.Progress.Stop()
	if !o.quiet {
		printSummary(out, o.mode, o.dryRun, sum)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return &exitError{code: exitAborted, err: fmt.Errorf("%s interrupted; run it again to finish: %w", o.mode, err)}
	case err != nil:
		return &exitError{code: exitFailure, err: err}
	case o.reportProblems && sum.Problems():
		return &exitError{code: exitProblems, err: fmt.Errorf("%s left %d conflict(s) or problem(s) unresolved", o.mode, sum.Skipped)}
	}
	return nil
}

// aborted maps an error during start-up to exit status 3 if the user
// interrupted it.
func aborted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &exitError{code: exitAborted, err: err}
	}
	return err
}

// openStore opens the state of the pair. A dry run reads it if it exists
// and otherwise runs without one, so that it writes nothing anywhere.
func (o *oneshotOptions) openStore(g *globalOptions, local, remote target.Target) (*sync.Store, error) {
	dir := o.stateDir
	if dir == "" {
		var err error
		if dir, err = sync.DefaultStateDir(local.ID(), remote.ID()); err != nil {
			return nil, err
		}
	}
	if !o.dryRun {
		st, err := sync.OpenStore(dir, local.ID(), remote.ID(), g.log)
		return st, unwritableHint(err, "--state-dir")
	}
	// A folder made for the state (mkdir, or a --state-dir of a task)
	// holds none yet, as a missing one.
	if empty, err := isEmptyDir(dir); errors.Is(err, fs.ErrNotExist) || empty {
		return nil, nil
	}
	st, err := sync.OpenStoreReadOnly(dir, local.ID(), remote.ID(), g.log)
	if err != nil {
		return nil, fmt.Errorf("dry run: read the state: %w", err)
	}
	return st, nil
}

func printSummary(w io.Writer, mode sync.Mode, dry bool, s sync.Summary) {
	verb, note := "done", ""
	if dry {
		verb, note = "dry run done", " (nothing changed; this is the plan)"
	}
	parts := []string{
		fmt.Sprintf("%d up (%s)", s.FilesUp, byteCount(s.BytesUp)),
		fmt.Sprintf("%d down (%s)", s.FilesDown, byteCount(s.BytesDown)),
		fmt.Sprintf("%d deleted locally", s.DeletedLocal),
		fmt.Sprintf("%d deleted remotely", s.DeletedRemote),
		fmt.Sprintf("%d conflicts", s.Conflicts),
		fmt.Sprintf("%d skipped", s.Skipped),
	}
	if s.DirsCreated > 0 {
		parts = append(parts, fmt.Sprintf("%d folder(s) created", s.DirsCreated))
	}
	if s.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", s.Errors))
	}
	fmt.Fprintf(w, "%s %s in %s%s: %s\n", mode, verb, s.Elapsed.Round(time.Millisecond), note, strings.Join(parts, ", "))
}

func byteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether f is a terminal: a prompt or a redrawn
// progress line makes sense there only. A character device is not enough
// (cron hands programs /dev/null), so ask the terminal driver.
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
