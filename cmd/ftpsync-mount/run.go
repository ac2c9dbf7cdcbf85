package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/internal/config"
)

// runFlags override a task's settings from the command line, as
// `pyftpsync run TASK --dry-run -v` does.
type runFlags struct {
	dryRun, verbose, quiet, progress, list bool
}

func newRunCmd(g *globalOptions) *cobra.Command {
	rf := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [TASK]",
		Short: "Run a named upload, download or sync task from the configuration (pyftpsync run)",
		Long: `run runs a task defined in the configuration file
($XDG_CONFIG_HOME/ftpsync-mount/config.yaml, or --config FILE) or in
pyftpsync.yaml in the current folder, as 'pyftpsync run' does. Without TASK
it runs pyftpsync.yaml's default_task.

A task names its mode (upload, download or sync; pyftpsync's "command"),
its local folder, its remote (a named remote or a URL) and any flag of that
command, spelled like the flag without dashes:

  tasks:
    deploy:
      mode: upload
      local: ./public
      remote: site
      delete: true
      exclude: ["*.log", build/]

remote is a name from remotes: or a URL like ftp://user@host/path.
In pyftpsync.yaml the local folder is relative to the file's folder, and
common_config gives settings every task shares. Passwords never go into
either file: use FTPSYNC_PASSWORD, ~/.netrc or password-file.`,
		Example: `  ftpsync-mount run deploy
  ftpsync-mount run deploy --dry-run
  ftpsync-mount run --list
  ftpsync-mount --config ./ftp.yaml run nightly -q`,
		Args: maxArgs(1, "ftpsync-mount run [TASK] [--dry-run]"),
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			cfg, err := loadConfig(c, true)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return matching(cfg.TaskNames(), toComplete), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, true)
			if err != nil {
				return err
			}
			if rf.list {
				listTasks(cmd, cfg)
				return nil
			}
			task, err := pickTask(cfg, args)
			if err != nil {
				return err
			}
			argv, err := taskArgs(cmd, g, task, rf)
			if err != nil {
				return err
			}
			g.log.WithField("task", task.Name).Debugf("running ftpsync-mount %s", strings.Join(argv, " "))
			sub := newRootCmd()
			sub.SetArgs(argv)
			sub.SetIn(cmd.InOrStdin())
			sub.SetOut(cmd.OutOrStdout())
			sub.SetErr(cmd.ErrOrStderr())
			return sub.ExecuteContext(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&rf.dryRun, "dry-run", "n", false, "print what the task would do; change nothing")
	f.BoolVarP(&rf.verbose, "verbose", "v", false, "also print paths that need nothing")
	f.BoolVarP(&rf.quiet, "quiet", "q", false, "print only errors")
	f.BoolVar(&rf.progress, "progress", false, "show progress")
	f.BoolVar(&rf.list, "list", false, "list the tasks and where they are defined")
	return cmd
}

// pickTask finds the named task, or the default one.
func pickTask(cfg *config.Config, args []string) (*config.Task, error) {
	name := cfg.DefaultTask
	if len(args) > 0 {
		name = args[0]
	}
	known := cfg.TaskNames()
	where := "no configuration file was found"
	if len(cfg.Files) > 0 {
		where = "read " + strings.Join(cfg.Files, " and ")
	}
	if name == "" {
		if len(known) == 0 {
			return nil, &usageError{msg: fmt.Sprintf("run: no tasks defined (%s); add tasks: to %s or write a pyftpsync.yaml", where, config.DefaultPath())}
		}
		return nil, &usageError{msg: fmt.Sprintf("run: name a task: %s", strings.Join(known, ", "))}
	}
	t, ok := cfg.Tasks[name]
	if !ok {
		if cfg.DefaultFrom != "" && name == cfg.DefaultTask {
			return nil, fmt.Errorf("%s: default_task %q is not among the tasks (%s)", cfg.DefaultFrom, name, strings.Join(known, ", "))
		}
		if len(known) == 0 {
			return nil, &usageError{msg: fmt.Sprintf("run: no task %q: no tasks are defined (%s)", name, where)}
		}
		return nil, &usageError{msg: fmt.Sprintf("run: no task %q; known tasks: %s (%s)", name, strings.Join(known, ", "), where)}
	}
	return t, nil
}

// taskArgs builds the command line of the task's one-shot command. Every
// setting is first applied to a fresh command of that mode, so that a bad
// value or a flag the mode lacks (delete for sync) is reported with its
// file and line rather than as a flag error nobody typed.
func taskArgs(cmd *cobra.Command, g *globalOptions, t *config.Task, rf *runFlags) ([]string, error) {
	var probe *cobra.Command
	switch t.Mode {
	case "upload":
		probe = newUploadCmd(g)
	case "download":
		probe = newDownloadCmd(g)
	default:
		probe = newSyncCmd(g)
	}
	what := fmt.Sprintf("task %q", t.Name)
	if err := applySettings(probe.Flags(), t.File, what, t.Settings, false); err != nil {
		return nil, err
	}
	argv := []string{t.Mode}
	// Global flags the user gave to run apply to the task too.
	for _, name := range []string{"config", "log-level", "log-file"} {
		if f := cmd.Flag(name); f != nil && f.Changed {
			argv = append(argv, "--"+name+"="+f.Value.String())
		}
	}
	for _, s := range t.Settings {
		argv = append(argv, "--"+s.Key+"="+s.Value)
	}
	if rf.verbose {
		// The command line's choice replaces the task's, which would
		// otherwise contradict it (-v against quiet: true).
		argv = append(dropFlag(argv, "--quiet="), "--verbose")
	}
	if rf.quiet {
		argv = append(dropFlag(argv, "--verbose="), "--quiet")
	}
	if rf.dryRun {
		argv = append(argv, "--dry-run")
	}
	if rf.progress {
		argv = append(argv, "--progress")
	}
	// "--" keeps a folder named like a flag from being read as one.
	return append(argv, "--", t.Local, t.Remote), nil
}

func dropFlag(argv []string, prefix string) []string {
	out := argv[:0:0]
	for _, a := range argv {
		if !strings.HasPrefix(a, prefix) {
			out = append(out, a)
		}
	}
	return out
}

func listTasks(cmd *cobra.Command, cfg *config.Config) {
	out := cmd.OutOrStdout()
	names := cfg.TaskNames()
	if len(names) == 0 {
		fmt.Fprintf(out, "no tasks defined; add tasks: to %s or write a pyftpsync.yaml\n", config.DefaultPath())
		return
	}
	sort.Strings(names)
	for _, n := range names {
		t := cfg.Tasks[n]
		mark := ""
		if n == cfg.DefaultTask {
			mark = " (default)"
		}
		fmt.Fprintf(out, "%-16s %-8s %s -> %s   %s:%d%s\n", n, t.Mode, t.Local, t.Remote, t.File, t.Line, mark)
	}
}
