package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

func TestHelperArgs(t *testing.T) {
	for _, tc := range []struct{ argv, want []string }{
		{[]string{"/usr/bin/ftpsync-mount", "mount", "a", "b"}, []string{"mount", "a", "b"}},
		// What mount.fuse3 runs for type fuse.ftpsync-mount.
		{[]string{"ftpsync-mount", "ftp://h/", "/mnt", "-o", "rw,dev,suid"}, []string{"mount-helper", "ftp://h/", "/mnt", "-o", "rw,dev,suid"}},
		// What mount(8) runs for type ftpsync-mount, through the symlink.
		{[]string{"/sbin/mount.ftpsync-mount", "site", "/mnt", "-o", "ro"}, []string{"mount-helper", "site", "/mnt", "-o", "ro"}},
		{[]string{"/sbin/mount.ftpsync-mount", "site", "/mnt"}, []string{"mount-helper", "site", "/mnt"}},
		{[]string{"ftpsync-mount", "--log-level", "debug", "-o", "x"}, []string{"--log-level", "debug", "-o", "x"}},
		{[]string{"ftpsync-mount"}, []string{}},
	} {
		if got := helperArgs(tc.argv); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("helperArgs(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

func TestMountOptionFlags(t *testing.T) {
	got, err := mountOptionFlags("rw,nodev,nosuid,_netdev,nofail,noauto,user,users,x-systemd.automount,x-systemd.mount-timeout=30," +
		"cache_dir=/var/cache/site,cache-max-size=10G,connections=3,password_file=/etc/p,allow_other,ro," +
		"dir_cache_time=1m,log_file=/var/log/site.log,log_level=debug,timeout=10s,ca_file=/etc/ca.pem,insecure_skip_verify,config=/etc/c.yaml,comment=x," +
		"nonempty,allow-non-empty")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--cache-dir=/var/cache/site", "--cache-max-size=10G", "--connections=3", "--password-file=/etc/p",
		"--allow-other", "--read-only", "--dir-cache-time=1m", "--log-file=/var/log/site.log", "--log-level=debug",
		"--timeout=10s", "--ca-file=/etc/ca.pem", "--insecure-skip-verify", "--config=/etc/c.yaml",
		"--allow-non-empty", "--allow-non-empty"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags =\n%q\nwant\n%q", got, want)
	}
	for opt, msg := range map[string]string{
		"cache_max_sise=1G": `unknown mount option "cache_max_sise=1G"`,
		"connections":       "needs a value",
		"connections=":      "needs a value",
		"allow_other=1":     "takes no value",
	} {
		if _, err := mountOptionFlags(opt); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: err %v, want %q", opt, err, msg)
		}
	}
}

func TestParseHelperArgs(t *testing.T) {
	h, err := parseHelperArgs([]string{"--log-level", "debug", "site", "/mnt", "-o", "rw,connections=2,nonempty", "-t", "ftpsync-mount", "-n", "-v", "-r", "-ocache_max_size=1G", "--config=/etc/c.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.mountArgs()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mount", "--daemon", "--log-level=debug", "--config=/etc/c.yaml", "--connections=2", "--allow-non-empty", "--read-only", "--cache-max-size=1G", "--", "site", "/mnt"}
	if !reflect.DeepEqual(got, want) || !h.verbose {
		t.Errorf("mountArgs = %q (verbose %v), want %q", got, h.verbose, want)
	}
	for _, bad := range [][]string{{"site"}, {"a", "b", "c"}, {"a", "b", "-o"}, {"a", "b", "-x"}, {"a", "b", "--log-level"}, {"a", "b", "--bogus=1"}} {
		if _, err := parseHelperArgs(bad); err == nil {
			t.Errorf("parseHelperArgs(%q) accepted", bad)
		}
	}
}

// TestMountFstabStyle mounts as `mount -t fuse.ftpsync-mount` does: mount(8)
// runs mount.fuse3 with -t fuse.ftpsync-mount, which runs ftpsync-mount
// from PATH with -o. mount(8) itself is left out because it clears PATH
// for its helpers (so the shell's default path must hold the binary, which
// `make install` and the .deb see to) and this test must not install into
// /usr/local/bin. The remote is a named one from the file given with config=.
func TestMountFstabStyle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount.fuse3 running a FUSE helper as another user needs /etc/fuse.conf changes; run as root")
	}
	helper, err := exec.LookPath("mount.fuse3")
	if err != nil {
		t.Skip("mount.fuse3 (Debian package fuse3) is not installed")
	}
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	os.WriteFile(filepath.Join(srv.Root, "f"), []byte("from fstab"), 0o644)
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	writeConfig(t, pass, srv.Password+"\n")
	cfg := filepath.Join(dir, "config.yaml")
	writeConfig(t, cfg, "remotes:\n  site:\n    url: "+srv.URL()+"\n    connections: 2\n")
	mnt, cacheDir := t.TempDir(), t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// An unknown option fails the mount with a message naming it.
	out, err := run(helper, "site", mnt, "-o", "config="+cfg+",chache_dir=/x", "-t", "fuse.ftpsync-mount")
	if err == nil || !strings.Contains(out, "chache_dir") {
		t.Fatalf("mount with a misspelt option: %v\n%s", err, out)
	}
	// A mount point that is not empty is refused, unless the fstab line
	// says nonempty (FUSE 2's option, which mount.fuse3 passes on).
	hidden := filepath.Join(mnt, "hidden")
	writeConfig(t, hidden, "mine")
	opts := "rw,nodev,nosuid,_netdev,x-systemd.automount,config=" + cfg + ",password_file=" + pass + ",cache_dir=" + cacheDir + ",ro"
	out, err = run(helper, "site", mnt, "-o", opts, "-t", "fuse.ftpsync-mount")
	if err == nil || !strings.Contains(out, "mount point "+mnt+" is not empty") || !strings.Contains(out, "-o nonempty") {
		t.Fatalf("mount on a folder that is not empty: %v\n%s", err, out)
	}
	if out, err := run(helper, "site", mnt, "-o", opts+",nonempty", "-t", "fuse.ftpsync-mount"); err != nil {
		t.Fatalf("mount.fuse3 -t fuse.ftpsync-mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { run(bin, "unmount", mnt) })
	// The helper returned, so the mount must be usable now, without waiting.
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "from fstab" {
		t.Fatalf("read through the fstab-style mount: %q, %v", got, err)
	}
	if ok, err := isOurMount(mnt); !ok || err != nil {
		t.Fatalf("isOurMount = %v, %v", ok, err)
	}
	if out, err := run(bin, "unmount", mnt); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(hidden); err != nil || string(got) != "mine" {
		t.Fatalf("the mount point's own file after the unmount: %q, %v", got, err)
	}
}

// TestNotifyReady checks the datagram systemd receives for Type=notify.
func TestNotifyReady(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	t.Setenv("NOTIFY_SOCKET", "")
	notifyReady(log)
	if len(hook.AllEntries()) != 0 {
		t.Fatalf("without NOTIFY_SOCKET: %v", hook.LastEntry())
	}
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	notifyReady(log)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], []byte("READY=1")) || len(hook.AllEntries()) != 0 {
		t.Fatalf("received %q, %v, log %v", buf[:n], err, hook.AllEntries())
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	notifyReady(log)
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "systemd") {
		t.Error("no warning for a socket nobody listens on")
	}
}
