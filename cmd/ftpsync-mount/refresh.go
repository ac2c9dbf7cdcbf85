package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/fs"
	"github.com/ftpsync-mount/ftpsync-mount/sync"
)

// The refresh and resolve commands, and what the mount process does for
// them. Both name a path in the mount; the mount's process gets it
// relative to the mount's root.

func newRefreshCmd(g *globalOptions) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "refresh MOUNTPOINT [PATH]",
		Short: "List a folder of a running mount from the server now",
		Long: `refresh makes a running mount list PATH (a folder in the mount, relative to
MOUNTPOINT or absolute; default the whole mount's root) from the server now,
instead of at its next poll (--poll-interval), and returns once the mount
shows what the server holds. Files changed on the server that did not change
here are replaced; files changed on both sides are settled as conflicts by
the write-back (see status). --recursive lists every folder below it that
the mount has seen.`,
		Example: `  ftpsync-mount refresh ~/site
  ftpsync-mount refresh ~/site images --recursive`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return &usageError{msg: fmt.Sprintf("refresh takes 1 or 2 arguments, got %d: ftpsync-mount refresh MOUNTPOINT [PATH] [--recursive]", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			rel := ""
			if len(args) == 2 {
				if rel, err = inMount(mp, args[1]); err != nil {
					return err
				}
			}
			info, err := askInfo(mp, controlRequest{Op: "refresh", Path: rel, Recursive: recursive})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "refresh %s: %s\n", filepath.Join(args[0], rel), info)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "also list every folder below PATH that the mount has seen")
	return cmd
}

// askInfo sends one request to the mount at mp and returns what its
// final reply says it did.
func askInfo(mp string, req controlRequest) (string, error) {
	var info string
	err := askControlReq(mp, req, func(r controlReply) error {
		info = r.Info
		return nil
	})
	return info, err
}

func newResolveCmd(g *globalOptions) *cobra.Command {
	var keep string
	cmd := &cobra.Command{
		Use:   "resolve PATH --keep=local|remote|both",
		Short: "Settle a conflict that status lists",
		Long: `resolve settles one conflict of a running mount, named by the file's path in
the mount or by its conflict copy's (NAME.conflict-YYYYMMDD-HHMMSS.EXT).

  --keep=local   the local version wins: the conflict copy replaces the
                 server's version (or the server's copy is deleted, where
                 the file was deleted here)
  --keep=remote  the server's version wins: the conflict copy is deleted
                 (or the local version, where the server deleted the file)
  --keep=both    both stay as they are; the conflict is forgotten

The change is made in the mount and reaches the server like any other.`,
		Example: `  ftpsync-mount resolve ~/site/index.html --keep=local
  ftpsync-mount resolve ~/site/index.conflict-20261207-101500.html --keep=remote`,
		Args: exactArgs(1, "ftpsync-mount resolve PATH --keep=local|remote|both"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := cache.ParseKeep(keep); err != nil {
				return &usageError{msg: "--keep " + err.Error()}
			}
			p, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			mp, rel, err := mountOf(p)
			if err != nil {
				return err
			}
			info, err := askInfo(mp, controlRequest{Op: "resolve", Path: rel, Keep: keep})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resolve %s: %s\n", args[0], info)
			return nil
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "which version wins: local, remote or both (required)")
	cmd.MarkFlagRequired("keep")
	return cmd
}

// inMount turns PATH of refresh (absolute, or relative to the mount point)
// into a path relative to the mount's root.
func inMount(mp, p string) (string, error) {
	abs := p
	if !filepath.IsAbs(p) {
		abs = filepath.Join(mp, p)
	}
	rel, err := filepath.Rel(mp, filepath.Clean(abs))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", &usageError{msg: fmt.Sprintf("%s is not inside the mount %s", p, mp)}
	}
	if rel == "." {
		rel = ""
	}
	return rel, nil
}

// mountOf finds the running mount that holds absolute path p (which may
// not exist: a file the server deleted, say) and p relative to its root.
func mountOf(p string) (mp, rel string, err error) {
	mps, err := ourMounts()
	if err != nil {
		return "", "", err
	}
	p = filepath.Clean(p)
	for _, m := range mps {
		if (p == m || strings.HasPrefix(p, m+"/")) && len(m) > len(mp) {
			mp = m
		}
	}
	if mp == "" {
		return "", "", fmt.Errorf("%s is not in an ftpsync-mount mount (see 'ftpsync-mount status')", p)
	}
	rel, err = inMount(mp, p)
	return mp, rel, err
}

// mountResolution reads the mount's --resolve: the one-shot commands'
// choices that settle a conflict without asking.
func mountResolution(s string) (sync.Resolution, error) {
	if s == "" {
		return sync.ResolveKeepBoth, nil
	}
	r, err := sync.ParseResolution(s)
	if err != nil || r == sync.ResolveAsk || r == sync.ResolveSkip {
		return 0, &usageError{msg: fmt.Sprintf("--resolve %q: a mount settles conflicts without asking; use keep-both, local, remote, new or old", s)}
	}
	return r, nil
}

// refreshTimeout bounds a refresh request in the mount process.
const refreshTimeout = 10 * time.Minute

// notifySyncTimeout bounds waiting for the kernel to take the changes a
// refresh found.
const notifySyncTimeout = 30 * time.Second

// refreshPath lists the folder at p (relative to the mount's root) now.
func refreshPath(ctx context.Context, c *cache.Cache, l *sync.Lister, n *fs.Notifier, p string, recursive bool) (string, error) {
	e, err := c.LookupPath(p)
	if errors.Is(err, cache.ErrNotFound) {
		return "", fmt.Errorf("/%s: %w", p, os.ErrNotExist)
	}
	if err != nil {
		return "", err
	}
	if !e.IsDir {
		return "", fmt.Errorf("/%s is not a folder", p)
	}
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	st, err := l.RefreshTree(ctx, e.Ino, recursive)
	if err != nil {
		return "", err
	}
	// The kernel is told of the changes from a goroutine of its own; a
	// command run right after refresh must see them.
	n.Sync(notifySyncTimeout)
	info := fmt.Sprintf("listed %d folder(s) from the server", st.Listed)
	if st.Failed > 0 {
		return "", fmt.Errorf("%d of %d listings failed (the log says why); the mount shows what it had", st.Failed, st.Listed)
	}
	return info, nil
}

// resolvePath settles the conflict recorded for p, after listing its
// folder again so that what the server holds now is in the mount.
func resolvePath(ctx context.Context, c *cache.Cache, l *sync.Lister, n *fs.Notifier, p, keep string) (string, error) {
	k, err := cache.ParseKeep(keep)
	if err != nil {
		return "", fmt.Errorf("--keep %w", err)
	}
	if dir, err := c.LookupPath(path.Dir("/" + p)[1:]); err == nil {
		ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		l.RefreshTree(ctx, dir.Ino, false)
		cancel()
	}
	r, changes, err := c.Resolve(p, k)
	n.Changed(changes)
	n.Sync(notifySyncTimeout)
	if err != nil {
		return "", err
	}
	switch {
	case k == cache.KeepBoth:
		return "both versions stay; the conflict is forgotten", nil
	case k == cache.KeepLocal && r.Copy != "":
		return fmt.Sprintf("the local version (/%s) replaces the server's at /%s", r.Copy, r.Path), nil
	case k == cache.KeepRemote && r.Copy != "":
		return fmt.Sprintf("the server's version stays at /%s; the local version /%s is deleted", r.Path, r.Copy), nil
	case k == cache.KeepLocal:
		return fmt.Sprintf("the local side wins at /%s", r.Path), nil
	}
	return fmt.Sprintf("the server's side wins at /%s", r.Path), nil
}
