package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// exactArgs is cobra.ExactArgs with a message that tells the user what to
// type instead of only how many arguments were expected.
func exactArgs(n int, hint string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{msg: fmt.Sprintf("%s takes %d argument(s), got %d: %s", cmd.Name(), n, len(args), hint)}
		}
		return nil
	}
}
