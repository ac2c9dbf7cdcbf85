package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// helperNames are the program names under which mount(8) runs us directly:
// `mount -t ftpsync-mount` looks for /sbin/mount.ftpsync-mount. For
// `mount -t fuse.ftpsync-mount` (the fstab spelling) mount(8) runs
// /sbin/mount.fuse3, which runs `ftpsync-mount SOURCE MOUNTPOINT -o OPTS`
// from PATH; helperArgs recognises that form too.
var helperNames = map[string]bool{"mount.ftpsync-mount": true, "mount.fuse.ftpsync-mount": true}

// helperArgs turns the process's argv into the arguments of the command
// tree: a mount(8) helper invocation becomes `mount-helper ...`, anything
// else passes through unchanged.
func helperArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	args := argv[1:]
	if helperNames[filepath.Base(argv[0])] {
		return append([]string{"mount-helper"}, args...)
	}
	// mount.fuse3 always passes options (at least dev,suid or their no-
	// forms), so its call is SOURCE MOUNTPOINT -o OPTS; no command of ours
	// has a -o flag, so this cannot shadow a real command line.
	if len(args) == 4 && args[2] == "-o" && !strings.HasPrefix(args[0], "-") {
		return append([]string{"mount-helper"}, args...)
	}
	return args
}

// ignoredMountOptions are the generic options mount(8), mount.fuse3 and
// systemd pass along. They concern the kernel's mount flags, which FUSE
// sets itself (nodev, nosuid), or only mount and systemd themselves.
var ignoredMountOptions = map[string]bool{
	"rw": true, "defaults": true, "dev": true, "nodev": true, "suid": true, "nosuid": true,
	"exec": true, "noexec": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
	"atime": true, "noatime": true, "relatime": true, "norelatime": true, "strictatime": true,
	"nodiratime": true, "diratime": true, "lazytime": true, "nolazytime": true, "async": true,
	"sync": true, "dirsync": true, "loud": true, "silent": true,
}

// valueMountOptions map name=value options to flags.
var valueMountOptions = map[string]string{
	"cache_dir": "cache-dir", "cache_max_size": "cache-max-size", "connections": "connections",
	"password_file": "password-file", "ca_file": "ca-file", "timeout": "timeout",
	"dir_cache_time": "dir-cache-time", "log_file": "log-file", "log_level": "log-level",
	"config": "config", "metrics_addr": "metrics-addr",
}

// boolMountOptions map bare options to flags. nonempty is FUSE 2's name
// for mounting over a folder that is not empty, which fstab lines written
// for sshfs or curlftpfs carry; mount.fuse3 passes it on.
var boolMountOptions = map[string]string{
	"ro": "read-only", "allow_other": "allow-other", "insecure_skip_verify": "insecure-skip-verify",
	"nonempty": "allow-non-empty", "allow_non_empty": "allow-non-empty",
}

// mountOptionFlags translates a -o list into mount flags. Options of the
// form x-NAME are userspace annotations (x-systemd.automount, x-gvfs-show)
// and comment= is fstab's own; both are skipped. An unknown option is an
// error: a misspelt cache_max_size silently ignored would fill the disk.
func mountOptionFlags(opts string) ([]string, error) {
	var flags []string
	for _, opt := range strings.Split(opts, ",") {
		name, val, hasVal := strings.Cut(opt, "=")
		name = strings.ReplaceAll(name, "-", "_")
		switch {
		case opt == "" || ignoredMountOptions[name] || strings.HasPrefix(name, "x_") || name == "comment":
			continue
		case valueMountOptions[name] != "":
			if !hasVal || val == "" {
				return nil, &usageError{msg: fmt.Sprintf("mount option %s needs a value: %s=VALUE", name, name)}
			}
			flags = append(flags, "--"+valueMountOptions[name]+"="+val)
		case boolMountOptions[name] != "":
			if hasVal {
				return nil, &usageError{msg: fmt.Sprintf("mount option %s takes no value", name)}
			}
			flags = append(flags, "--"+boolMountOptions[name])
		default:
			return nil, &usageError{msg: fmt.Sprintf("unknown mount option %q; known: %s", opt, knownMountOptions())}
		}
	}
	return flags, nil
}

func knownMountOptions() string {
	var names []string
	for n := range valueMountOptions {
		names = append(names, n+"=")
	}
	for n := range boolMountOptions {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// helperCall is a parsed mount(8) helper command line.
type helperCall struct {
	source, mountpoint string
	opts               []string // the -o lists, in order
	global             []string // --log-level, --log-file and --config, as --NAME=VALUE
	verbose            bool
}

// helperGlobalFlags are the root's flags, which mount-helper takes itself
// since it parses its own command line.
var helperGlobalFlags = map[string]bool{"--log-level": true, "--log-file": true, "--config": true}

// parseHelperArgs reads SOURCE MOUNTPOINT [-o OPTS] [-t TYPE] [-v] [-n]
// [-s] [-f] [-r] [-w], the form mount(8) uses for every helper, in any
// order; -t names our own type and -n -s -f concern mount itself. The
// global flags (ftpsync-mount --log-level debug mount-helper ...) pass on.
func parseHelperArgs(args []string) (*helperCall, error) {
	h := &helperCall{}
	var pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-o", "-t":
			if i+1 == len(args) {
				return nil, &usageError{msg: a + " needs a value"}
			}
			i++
			if a == "-o" {
				h.opts = append(h.opts, args[i])
			}
		case "-v":
			h.verbose = true
		case "-n", "-s", "-f", "-w":
		case "-r":
			h.opts = append(h.opts, "ro")
		default:
			if name, val, hasVal := strings.Cut(a, "="); helperGlobalFlags[name] {
				if !hasVal {
					if i+1 == len(args) {
						return nil, &usageError{msg: a + " needs a value"}
					}
					i++
					val = args[i]
				}
				h.global = append(h.global, name+"="+val)
				continue
			}
			if strings.HasPrefix(a, "-o") && len(a) > 2 {
				h.opts = append(h.opts, a[2:])
				continue
			}
			if strings.HasPrefix(a, "-") {
				return nil, &usageError{msg: fmt.Sprintf("mount helper: unknown option %s", a)}
			}
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, &usageError{msg: fmt.Sprintf("mount helper takes REMOTE MOUNTPOINT, got %d argument(s)", len(pos))}
	}
	h.source, h.mountpoint = pos[0], pos[1]
	return h, nil
}

// mountArgs is the mount command line the helper runs.
func (h *helperCall) mountArgs() ([]string, error) {
	argv := append([]string{"mount", "--daemon"}, h.global...)
	for _, o := range h.opts {
		flags, err := mountOptionFlags(o)
		if err != nil {
			return nil, err
		}
		argv = append(argv, flags...)
	}
	return append(argv, "--", h.source, h.mountpoint), nil
}

func newMountHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "mount-helper REMOTE MOUNTPOINT [-o OPTIONS]",
		Short: "Mount as mount(8) does for fstab: mount -t fuse.ftpsync-mount REMOTE MOUNTPOINT -o OPTIONS",
		Long: `mount-helper is what 'mount -t fuse.ftpsync-mount' runs (through
/sbin/mount.fuse3), and what runs when the program is called as
mount.ftpsync-mount. It mounts in the background and returns once the mount
is ready, as mount(8) expects. REMOTE is a URL or a remote named in the
configuration file.

Options (-o, comma-separated) map to mount's flags:
  cache_dir=DIR  cache_max_size=SIZE  connections=N  password_file=FILE
  ca_file=FILE  timeout=DURATION  dir_cache_time=DURATION  log_file=FILE
  log_level=LEVEL  config=FILE  ro  allow_other  insecure_skip_verify
  nonempty (or allow_non_empty: mount over a folder that is not empty)
Generic options (rw, dev, suid, exec, auto, noauto, nofail, _netdev, user,
users, x-systemd.*, ...) are accepted and ignored. In /etc/fstab:

  ftp://alice@files.example.com/site  /srv/site  fuse.ftpsync-mount  _netdev,nofail,password_file=/etc/ftpsync-mount/site.pass,cache_max_size=10G  0  0

mount.fuse3 also understands setuid=USER, to run the mount as that user.`,
		Example: `  mount -t fuse.ftpsync-mount ftp://alice@host/site /srv/site -o password_file=/root/ftp.pass,ro
  ftpsync-mount mount-helper site /srv/site -o cache_max_size=10G,allow_other`,
		DisableFlagParsing: true, // mount(8)'s syntax, not ours
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a == "-h" || a == "--help" {
					return cmd.Help()
				}
			}
			h, err := parseHelperArgs(args)
			if err != nil {
				return err
			}
			argv, err := h.mountArgs()
			if err != nil {
				return err
			}
			return runHelperMount(cmd, argv, h.verbose)
		},
	}
}

// runHelperMount runs `ftpsync-mount mount --daemon ...` as a child: the
// --daemon parent re-executes its own command line, which must be a mount
// command line, not mount(8)'s. The child's error text becomes ours, so
// that mount(8) prints it once.
func runHelperMount(cmd *cobra.Command, argv []string, verbose bool) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("mount helper: find this program: %w", err)
	}
	var stderr bytes.Buffer
	child := exec.Command(self, argv...)
	child.Stderr = &stderr
	if verbose {
		child.Stdout = cmd.OutOrStdout()
	}
	err = child.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr.String()), "ftpsync-mount: "))
		msg = strings.TrimSuffix(msg, "Run 'ftpsync-mount --help' for usage.")
		return &exitError{code: ee.ExitCode(), err: errors.New(strings.TrimSpace(msg))}
	}
	if err != nil {
		return fmt.Errorf("mount helper: run %s: %w", self, err)
	}
	return nil
}
