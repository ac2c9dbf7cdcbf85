package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func newFlushCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "flush MOUNTPOINT",
		Short: "Upload everything pending now and wait for it",
		Long: `flush makes a running mount upload every pending change at once, without
waiting for --write-back, shows progress and waits. It exits non-zero
naming what could not be uploaded (it stays queued). Files still open for
writing are uploaded once they are closed, so flush waits for them.`,
		Example: `  ftpsync-mount flush ~/site`,
		Args:    exactArgs(1, "ftpsync-mount flush MOUNTPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			if err := askControl(mp, "flush", progressPrinter(cmd.ErrOrStderr(), "flush "+args[0])); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "flush %s: everything is on the server\n", args[0])
			return nil
		},
	}
}
