package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMountinfoHas(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
97 22 0:45 / /tmp/bench/mnt-ours-1 rw,nosuid,nodev,relatime shared:50 - fuse.ftpsync-mount ftp://h/ rw
98 22 0:46 / /tmp/with\040space rw - fuse.rclone bench: rw
`
	for dir, want := range map[string]bool{
		"/tmp/bench/mnt-ours-1": true,
		"/tmp/bench/mnt-ours":   false, // a prefix is not the mount point
		"/tmp/bench":            false,
		"/tmp/with space":       true,
		"/":                     true,
	} {
		if got := mountinfoHas(info, dir); got != want {
			t.Errorf("mountinfoHas(%q) = %v, want %v", dir, got, want)
		}
	}
}

func TestWhereKept(t *testing.T) {
	const local, server = "local\n", "server\n"
	for _, c := range []struct {
		files                 map[string]string
		serverKept, localKept bool
		desc                  string
	}{
		{map[string]string{"f.txt": server, "f.conflict-20261207-054442.txt": local}, true, true,
			"server's version in f.txt, local in f.conflict-20261207-054442.txt"},
		{map[string]string{"f.txt": local}, false, true,
			"server's version overwritten: server's version in nowhere, local in f.txt"},
		{map[string]string{"f.txt": server, "other": "x"}, true, false,
			"server's version in f.txt, local in nowhere"},
	} {
		desc, s, l := whereKept(c.files, local, server)
		if desc != c.desc || s != c.serverKept || l != c.localKept {
			t.Errorf("whereKept(%v) = %q, %v, %v; want %q, %v, %v", c.files, desc, s, l, c.desc, c.serverKept, c.localKept)
		}
	}
}

func TestFindLine(t *testing.T) {
	log := "INFO  : new.txt: vfs cache: queuing for upload in 5s\n" +
		"ERROR : new.txt: Failed to copy: 550 Permission denied\n"
	if got := findLine(log, "ERROR", "new.txt"); !strings.HasPrefix(got, "ERROR : new.txt: Failed") {
		t.Errorf("findLine = %q", got)
	}
	if got := findLine(log, "ERROR", "old.txt"); got != "" {
		t.Errorf("findLine for a file the log does not name = %q", got)
	}
}

func TestExitText(t *testing.T) {
	if got := exitText(nil); got != "exit 0" {
		t.Errorf("exitText(nil) = %q", got)
	}
	err := exec.Command("sh", "-c", "exit 3").Run()
	if got := exitText(err); got != "exit 3" {
		t.Errorf("exitText(exit 3) = %q", got)
	}
	err = exec.Command("sh", "-c", "kill -TERM $$").Run()
	if got := exitText(err); !strings.Contains(got, "terminated") {
		t.Errorf("exitText(SIGTERM) = %q, want it to name the signal", got)
	}
}

func TestSeenText(t *testing.T) {
	if got := seenText(1340*time.Millisecond, true, time.Minute); got != "after 1.3 s" {
		t.Errorf("seenText(seen) = %q", got)
	}
	if got := seenText(time.Minute, false, time.Minute); got != "not within 60 s" {
		t.Errorf("seenText(not seen) = %q", got)
	}
}

func TestTogetherJoinsErrors(t *testing.T) {
	ran := make(chan string, 3)
	err := together(
		task{"a", func() error { ran <- "a"; return nil }},
		task{"b", func() error { ran <- "b"; return errors.New("boom") }},
		task{"c", func() error { ran <- "c"; return nil }})
	if len(ran) != 3 {
		t.Errorf("%d of 3 tasks ran", len(ran))
	}
	if err == nil || err.Error() != "b: boom" {
		t.Errorf("together = %v, want b: boom", err)
	}
	if err := together(task{"a", func() error { return nil }}); err != nil {
		t.Errorf("together of a task that succeeds = %v", err)
	}
}

// TestBehaviourVerdict: a behaviour row passes or fails on our side only,
// and printBehaviour says which.
func TestBehaviourVerdict(t *testing.T) {
	rows := []result{
		{issue: 8, name: "kept", behave: &behaviour{ours: "both kept", rclone: "overwritten", expect: "both kept", ok: true}},
		{issue: 8, name: "lost", behave: &behaviour{ours: "overwritten", rclone: "both kept", expect: "both kept"}},
	}
	if !rows[0].pass() || rows[1].pass() {
		t.Fatalf("pass() = %v, %v; want true, false", rows[0].pass(), rows[1].pass())
	}
	var out bytes.Buffer
	printBehaviour(&out, rows, "rclone v1")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "rclone v1") ||
		!strings.HasSuffix(lines[1], " ok") || !strings.HasSuffix(lines[2], " FAIL") {
		t.Errorf("printBehaviour printed:\n%s", out.String())
	}
}
