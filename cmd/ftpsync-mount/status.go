package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

func newStatusCmd(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [MOUNTPOINT]",
		Short: "Show pending uploads, transfers, conflicts and errors of running mounts",
		Long: `status asks a running mount (or every ftpsync-mount mount of this user when no
MOUNTPOINT is given) what is queued for the server, what is being uploaded,
which conflicts were settled and which operations failed last.`,
		Example: `  ftpsync-mount status ~/site
  ftpsync-mount status --json`,
		Args: maxArgs(1, "ftpsync-mount status [MOUNTPOINT] [--json]"),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			var mps []string
			if len(args) == 1 {
				mp, err := filepath.Abs(args[0])
				if err != nil {
					return err
				}
				mps = []string{mp}
			} else {
				if mps, err = ourMounts(); err != nil {
					return err
				}
				if len(mps) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no ftpsync-mount mounts")
					return nil
				}
			}
			var all []mountStatus
			var failed error
			for _, mp := range mps {
				err := askControl(mp, "status", func(r controlReply) error {
					if r.Status != nil {
						all = append(all, *r.Status)
					}
					return nil
				})
				if err != nil && len(args) == 1 {
					return err
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "ftpsync-mount: %v\n", err)
					failed = err
				}
			}
			defer func() {
				if failed != nil && len(all) == 0 {
					err = failed
				}
			}()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if len(args) == 1 && len(all) == 1 {
					return enc.Encode(all[0])
				}
				return enc.Encode(all)
			}
			for _, st := range all {
				printStatus(cmd.OutOrStdout(), st)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for scripts")
	return cmd
}

func printStatus(w io.Writer, st mountStatus) {
	q := st.Queue
	fmt.Fprintf(w, "%s: %s (pid %d)\n", st.Mountpoint, st.Remote, st.PID)
	switch {
	case !q.Loaded:
		fmt.Fprintln(w, "  reading the queue")
	case q.Pending == 0:
		fmt.Fprintln(w, "  everything is on the server")
	default:
		fmt.Fprintf(w, "  %d operations pending, %d running\n", q.Pending, len(q.Running))
	}
	for _, r := range q.Running {
		if r.Size > 0 {
			fmt.Fprintf(w, "    %s: %s of %s\n", r.Op, humanBytes(r.Sent), humanBytes(r.Size))
		} else {
			fmt.Fprintf(w, "    %s\n", r.Op)
		}
	}
	fmt.Fprintf(w, "  done since mount: %d operations, %s uploaded\n", q.Done, humanBytes(q.BytesSent))
	if len(st.Unresolved) > 0 {
		fmt.Fprintf(w, "  unresolved conflicts (%d); settle each with 'ftpsync-mount resolve PATH --keep=local|remote|both':\n", len(st.Unresolved))
		for _, c := range st.Unresolved {
			fmt.Fprintf(w, "    /%s: %s (%s)\n", c.Path, c.Kind, c.At.Local().Format(time.DateTime))
			if c.Copy != "" {
				fmt.Fprintf(w, "      local version:  /%s, %s\n", c.Copy, sideText(c.Local))
			} else if c.Local.Size != 0 || !c.Local.ModTime.IsZero() {
				fmt.Fprintf(w, "      local version:  %s\n", sideText(c.Local))
			}
			if c.Remote.Size != 0 || !c.Remote.ModTime.IsZero() {
				fmt.Fprintf(w, "      server version: /%s, %s\n", c.Path, sideText(c.Remote))
			}
		}
	}
	if len(q.Conflicts) > 0 {
		fmt.Fprintf(w, "  conflicts settled since mount (%d):\n", len(q.Conflicts))
		for _, c := range q.Conflicts {
			fmt.Fprintf(w, "    /%s: %s (%s)\n", c.Path, c.What, c.At.Local().Format(time.DateTime))
		}
	}
	if len(q.Errors) > 0 {
		fmt.Fprintln(w, "  last errors:")
		from := max(0, len(q.Errors)-5)
		for _, e := range q.Errors[from:] {
			fmt.Fprintf(w, "    %s %s\n", e.At.Local().Format(time.TimeOnly), e.Error)
		}
	}
	fmt.Fprintf(w, "  cache: %s used of %s in %s\n", humanBytes(st.CacheUsed), humanBytes(st.CacheTotal), st.CacheDir)
}

// progressPrinter shows the queue of a flush or unmount as it shrinks, one
// line per change.
func progressPrinter(w io.Writer, what string) func(controlReply) error {
	last := ""
	return func(r controlReply) error {
		if r.Status == nil {
			return nil
		}
		q := r.Status.Queue
		line := fmt.Sprintf("%s: %d operations pending, %d running", what, q.Pending, len(q.Running))
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		return nil
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// hasControl reports whether the mount at mp answers on a status socket.
func hasControl(mp string) bool {
	s, err := controlSocketOf(mp)
	return err == nil && s != ""
}

// ourMounts lists the ftpsync-mount mount points in the mount table.
func ourMounts() ([]string, error) {
	data, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range parseMountinfo(data) {
		if e.fstype == ourFsType {
			out = append(out, e.point)
		}
	}
	return out, nil
}

func readMountinfo() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read the mount table: %w", err)
	}
	return string(data), nil
}

// maxArgs is cobra.MaximumNArgs with a message that shows the usage.
func maxArgs(n int, hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return &usageError{msg: fmt.Sprintf("%s takes at most %d argument(s), got %d: %s", cmd.Name(), n, len(args), hint)}
		}
		return nil
	}
}

// sideText describes one version of a conflict: size and mtime.
func sideText(s cache.SideState) string {
	t := "unknown time"
	if !s.ModTime.IsZero() {
		t = s.ModTime.Local().Format(time.DateTime)
	}
	return fmt.Sprintf("%s, modified %s", humanBytes(s.Size), t)
}
