package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCompletionCmd replaces cobra's default completion command with one
// that says where each shell looks for the script. Completion also offers
// the configured remote and task names (see withNamedRemote and run).
func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: `completion prints a script that makes the shell complete ftpsync-mount's
commands, flags, named remotes and task names. 'make install' and the .deb
install it system-wide; to install it for yourself:

  bash: ftpsync-mount completion bash > ~/.local/share/bash-completion/completions/ftpsync-mount
  zsh:  ftpsync-mount completion zsh > "${fpath[1]}/_ftpsync-mount"
  fish: ftpsync-mount completion fish > ~/.config/fish/completions/ftpsync-mount.fish

bash needs the bash-completion package.`,
		Example: `  source <(ftpsync-mount completion bash)
  ftpsync-mount completion fish > ~/.config/fish/completions/ftpsync-mount.fish`,
		ValidArgs:             []string{"bash", "zsh", "fish"},
		Args:                  exactArgs(1, "ftpsync-mount completion bash|zsh|fish"),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return &usageError{msg: fmt.Sprintf("completion: unknown shell %q; use bash, zsh or fish", args[0])}
		},
	}
}
