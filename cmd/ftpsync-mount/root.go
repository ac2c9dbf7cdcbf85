package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	logLevel string
	logFile  string
	log      *logrus.Logger // built from the flags in PersistentPreRunE
	logOut   io.Closer      // the log file, if any
}

// newRootCmd builds the whole command tree. Each command lives in its own
// file and is added here.
func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ftpsync-mount",
		Short: "Mount a remote FTP folder as a local filesystem, or sync folders with FTP",
		Long: `ftpsync-mount mounts a remote FTP folder as a local filesystem served from a
persistent local cache, uploads local changes in the background and pulls
remote ones, keeping both versions when the same file changed on both sides.
It also runs pyftpsync-style one-shot sync, upload and download.

Passwords are never given on the command line: set FTPSYNC_PASSWORD, use
--password-file, or put the host in ~/.netrc.`,
		Example: `  ftpsync-mount mount ftp://alice@files.example.com/site ~/site
  ftpsync-mount status ~/site
  ftpsync-mount unmount ~/site
  ftpsync-mount sync ./site ftpes://alice@files.example.com/site --dry-run`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setupLog()
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if g.logOut != nil {
				g.logOut.Close()
			}
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: error, warn, info, debug or trace")
	root.PersistentFlags().StringVar(&g.logFile, "log-file", "", "write the log to this file instead of standard error")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	addConfigFlag(root)
	root.AddCommand(
		newVersionCmd(),
		newServeCmd(g),
		withNamedRemote(newMountCmd(g), 0),
		newUnmountCmd(g),
		newStatusCmd(g),
		newFlushCmd(g),
		newRefreshCmd(g),
		newResolveCmd(g),
		withNamedRemote(newSyncCmd(g), 1),
		withNamedRemote(newUploadCmd(g), 1),
		withNamedRemote(newDownloadCmd(g), 1),
		newDemoCmd(g),
		newRunCmd(g),
		newMountHelperCmd(),
		newCompletionCmd(),
		newManCmd(),
	)
	strictHelp(root)
	return root
}

// strictHelp makes 'help TOPIC' fail as a usage error when no command is
// called TOPIC; cobra's own prints the usage and exits 0, which tells a
// script that all went well.
func strictHelp(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, c := range root.Commands() {
		if c.Name() != "help" || c.Run == nil {
			continue
		}
		show := c.Run
		c.Run = nil
		c.RunE = func(c *cobra.Command, args []string) error {
			if found, _, err := c.Root().Find(args); found == nil || err != nil {
				return &usageError{msg: fmt.Sprintf("help: no command %q; 'ftpsync-mount help' lists them", strings.Join(args, " "))}
			}
			show(c, args)
			return nil
		}
	}
}

// setupLog builds the one logger every layer receives.
func (g *globalOptions) setupLog() error {
	lvl, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--log-level %q: use error, warn, info, debug or trace", g.logLevel)}
	}
	l := logrus.New()
	l.SetLevel(lvl)
	l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339})
	l.SetOutput(os.Stderr)
	if g.logFile != "" {
		f, err := os.OpenFile(g.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--log-file: %w", err)
		}
		l.SetOutput(f)
		g.logOut = f
	}
	g.log = l
	return nil
}
