package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall runs `make install` into a temporary DESTDIR and checks
// that everything a user reaches is there: the binary, the mount(8) helper
// link in /sbin, man pages, completion for three shells and the unit,
// rewritten for the binary's place.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the program with make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest := t.TempDir()
	cmd := exec.Command("make", "-C", filepath.Join("..", ".."), "install", "DESTDIR="+dest, "PREFIX=/opt/fm", "GEN="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, p := range []string{
		"opt/fm/bin/ftpsync-mount",
		"opt/fm/share/man/man1/ftpsync-mount.1.gz",
		"opt/fm/share/man/man1/ftpsync-mount-mount-helper.1.gz",
		"opt/fm/share/bash-completion/completions/ftpsync-mount",
		"opt/fm/share/zsh/site-functions/_ftpsync-mount",
		"opt/fm/share/fish/vendor_completions.d/ftpsync-mount.fish",
		"opt/fm/share/doc/ftpsync-mount/examples/config.yaml",
	} {
		if fi, err := os.Stat(filepath.Join(dest, p)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if link, err := os.Readlink(filepath.Join(dest, "sbin", "mount.ftpsync-mount")); err != nil || link != "/opt/fm/bin/ftpsync-mount" {
		t.Errorf("mount helper link: %q, %v", link, err)
	}
	unit := mustRead(t, filepath.Join(dest, "opt/fm/lib/systemd/system/ftpsync-mount@.service"))
	if !strings.Contains(unit, "ExecStart=/opt/fm/bin/ftpsync-mount ") || strings.Contains(unit, "/usr/bin/ftpsync-mount") {
		t.Errorf("the unit does not run the installed binary:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(dest, "opt/fm/bin/ftpsync-mount"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ftpsync-mount ") {
		t.Errorf("installed binary: %v\n%s", err, out)
	}
}
