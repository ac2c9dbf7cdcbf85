package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ftpsync-mount/ftpsync-mount/internal/config"
)

// addConfigFlag registers --config on the root. The value is read back
// through the flag set, so no command needs a field for it.
func addConfigFlag(root *cobra.Command) {
	root.PersistentFlags().String("config", "",
		"read named remotes and tasks from this file (default $XDG_CONFIG_HOME/ftpsync-mount/config.yaml)")
}

// loadConfig reads the file named by --config, or the default one if it
// exists. withProject also merges pyftpsync.yaml from the current folder,
// which holds tasks only.
func loadConfig(cmd *cobra.Command, withProject bool) (*config.Config, error) {
	path, required := "", false
	if f := cmd.Flag("config"); f != nil && f.Value.String() != "" {
		path, required = f.Value.String(), true
	}
	if path == "" {
		path = config.DefaultPath()
	}
	cfg, err := config.Load(path, required)
	if err != nil {
		return nil, err
	}
	if !withProject {
		return cfg, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("find the current folder for pyftpsync.yaml: %w", err)
	}
	project, err := config.LoadProject(wd)
	if err != nil {
		return nil, err
	}
	if err := cfg.Merge(project); err != nil {
		return nil, err
	}
	return cfg, nil
}

// withNamedRemote lets the argument at index arg of cmd name a remote from
// the configuration: the argument becomes the remote's URL and the
// remote's settings fill the flags the command line left unset. A URL or
// a name the configuration does not know passes through unchanged.
func withNamedRemote(cmd *cobra.Command, arg int) *cobra.Command {
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if arg < len(args) && !isRemoteSpec(args[arg]) {
			url, err := resolveRemote(c, args[arg])
			if err != nil {
				return err
			}
			args = append([]string{}, args...)
			args[arg] = url
		}
		return run(c, args)
	}
	cmd.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) != arg {
			return nil, cobra.ShellCompDirectiveDefault
		}
		cfg, err := loadConfig(c, false)
		if err != nil {
			return nil, cobra.ShellCompDirectiveDefault
		}
		// Remote names, and files and folders too: either may stand here.
		return matching(cfg.RemoteNames(), toComplete), cobra.ShellCompDirectiveDefault
	}
	return cmd
}

// resolveRemote returns the URL of the named remote after applying its
// settings to c's flags, or name itself if no remote has that name.
func resolveRemote(c *cobra.Command, name string) (string, error) {
	cfg, err := loadConfig(c, false)
	if err != nil {
		return "", err
	}
	r, ok := cfg.Remotes[name]
	if !ok {
		return name, nil
	}
	if err := applySettings(c.Flags(), r.File, fmt.Sprintf("remote %q", name), r.Settings, true); err != nil {
		return "", err
	}
	return r.URL, nil
}

// applySettings sets each flag the command line did not set. Settings the
// command has no flag for are skipped if optional (a remote's cache size
// means nothing to upload) and refused otherwise.
func applySettings(fs *pflag.FlagSet, file, what string, settings []config.Setting, optional bool) error {
	for _, s := range settings {
		f := fs.Lookup(s.Key)
		if f == nil {
			if optional {
				continue
			}
			return &usageError{msg: fmt.Sprintf("%s:%d: %s: %s is not a flag of %s", file, s.Line, what, s.Key, fs.Name())}
		}
		if f.Changed {
			continue // the command line wins
		}
		if err := fs.Set(s.Key, s.Value); err != nil {
			return &usageError{msg: fmt.Sprintf("%s:%d: %s: %s: %v", file, s.Line, what, s.Key, err)}
		}
	}
	return nil
}

func matching(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
