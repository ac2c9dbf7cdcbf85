package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes one man page per command, generated from the same
// cobra commands as --help so that the two cannot drift apart. It is
// hidden: packagers run it ('make install', 'make deb'), users read the
// result with man ftpsync-mount.
//
// cobra/doc renders through go-md2man; a roff writer of our own would
// have to escape and lay out every help text and flag table itself, which
// go-md2man already does and is what the cobra ecosystem's man pages use.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "man DIR",
		Short:   "Write the man pages (section 1) into DIR",
		Example: `  ftpsync-mount man ./man && man ./man/ftpsync-mount-mount.1`,
		Hidden:  true,
		Args:    exactArgs(1, "ftpsync-mount man DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // keeps the pages reproducible
			hdr := &doc.GenManHeader{Title: "FTPSYNC-MOUNT", Section: "1", Source: "ftpsync-mount " + version, Manual: "ftpsync-mount manual"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("man pages in %s: %w", args[0], err)
			}
			return nil
		},
	}
}
