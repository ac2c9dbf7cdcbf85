package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Two mounts of one server folder (two processes, two caches) edit the
// same and different files at random, without seeing each other's changes
// until each round ends with a flush of each, one after the other, and a
// refresh of both. (Uploads of one file by both at the same instant are
// not covered: FTP has no compare-and-swap, see docs/guarantees.md.)
// After each round:
//   - every version either side left (its last write of a path it did not
//     delete itself) is on the server, under the name or in a conflict copy;
//   - no file on the server is half-written: each holds a whole version
//     somebody wrote, and no temporary upload is left;
//   - every conflict copy on the server is listed by one side's status.
//
// FTPSYNC_TWO_MOUNT_SEEDS sets the number of seeds (default 4).
func TestTwoMountsEditingAtRandom(t *testing.T) {
	bin := buildBinary(t)
	seeds := envInt(t, "FTPSYNC_TWO_MOUNT_SEEDS", 4)
	for seed := int64(1); seed <= int64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { twoMountRun(t, bin, seed) })
	}
}

// twoSide is one of the two mounts and what it wrote.
type twoSide struct {
	name string
	mnt  string
	last map[string]string // path: the content it last left there
}

// twoClock dates each version a second after the one before: size and
// mtime tell versions apart, and two of one size written within the same
// second cannot be told apart (docs/guarantees.md). The test writes far
// faster than people edit.
type twoClock struct{ next time.Time }

func (c *twoClock) tick() time.Time {
	c.next = c.next.Add(time.Second)
	return c.next
}

func twoMountRun(t *testing.T, bin string, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	root := t.TempDir()
	written := map[string]bool{} // every content anybody wrote, whole
	for i := range 6 {
		c := fmt.Sprintf("initial %d\n", i)
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d.txt", i)), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		written[c] = true
	}
	srv := ftpdtest.StartRoot(t, root)
	var sides []*twoSide
	var procs []*mountProc
	clock := &twoClock{next: time.Now().Add(-24 * time.Hour).Truncate(time.Second)}
	for _, name := range []string{"A", "B"} {
		s := &twoSide{name: name, mnt: t.TempDir(), last: map[string]string{}}
		procs = append(procs, startMount(t, bin, srv, s.mnt, "--cache-dir", t.TempDir(), "--poll-interval", "1h", "--write-back", "1h", "--log-level", "debug"))
		sides = append(sides, s)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range sides {
				t.Logf("log of %s:\n%s", s.name, procs[i].log())
			}
		}
	})
	ctl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ftpsync-mount %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for round := range 3 {
		for _, s := range sides {
			s.last = map[string]string{} // what the other side saw may go
		}
		for op := range 8 {
			for _, s := range sides {
				twoMountOp(t, rng, s, fmt.Sprintf("%s seed %d round %d op %d\n", s.name, seed, round, op), clock.tick(), written)
			}
		}
		// Deletes are not held back by --write-back: let them reach the
		// server before the flushes, so that one side's changes land
		// first and the other's find the server changed where both edited.
		for _, s := range sides {
			waitOnlyUploads(t, bin, s.mnt)
		}
		order := []*twoSide{sides[0], sides[1]}
		if rng.Intn(2) == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, s := range order {
			ctl("flush", s.mnt)
		}
		for _, s := range sides {
			ctl("refresh", s.mnt, "--recursive")
		}
		// Uploads of conflict copies made by the refreshes' classification.
		for _, s := range sides {
			ctl("flush", s.mnt)
		}
		checkTwoMounts(t, root, sides, written, func(s *twoSide) mountStatus {
			var st mountStatus
			if err := json.Unmarshal([]byte(ctl("status", s.mnt, "--json")), &st); err != nil {
				t.Fatalf("status --json of %s: %v", s.name, err)
			}
			return st
		})
	}
	for i, s := range sides {
		ctl("unmount", s.mnt)
		if err := procs[i].wait(t); err != nil {
			t.Fatalf("mount %s exited: %v\n%s", s.name, err, procs[i].log())
		}
	}
}

// twoMountOp applies one random change through side s's mount: a write, an
// append, a new file from a small pool of names both sides use, or a delete.
func twoMountOp(t *testing.T, rng *rand.Rand, s *twoSide, tag string, at time.Time, written map[string]bool) {
	t.Helper()
	var files []string
	ents, err := os.ReadDir(s.mnt)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	p := fmt.Sprintf("new-%d.txt", rng.Intn(3))
	kind := rng.Intn(10)
	if len(files) > 0 && kind < 8 {
		p = files[rng.Intn(len(files))]
	}
	full := filepath.Join(s.mnt, p)
	t.Logf("%s", strings.TrimSpace(tag)+": "+[]string{"write", "write", "write", "write", "append", "append", "delete", "delete", "write", "write"}[kind]+" "+p)
	switch {
	case kind < 4 || kind >= 8: // write (or create)
		if err := os.WriteFile(full, []byte(tag), 0o644); err != nil {
			t.Fatalf("%s: write %s: %v", s.name, p, err)
		}
	case kind < 6: // append
		f, err := os.OpenFile(full, os.O_APPEND|os.O_WRONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			// The other side deleted it (deletes are not held back) and
			// its content was never read here: gone, as it should be.
			return
		}
		if err != nil {
			t.Fatalf("%s: append to %s: %v", s.name, p, err)
		}
		f.WriteString(tag)
		if err := f.Close(); err != nil {
			t.Fatalf("%s: close %s: %v", s.name, p, err)
		}
	default: // delete
		if err := os.Remove(full); err != nil {
			t.Fatalf("%s: delete %s: %v", s.name, p, err)
		}
		delete(s.last, p)
		return
	}
	if err := os.Chtimes(full, at, at); err != nil {
		t.Fatalf("%s: set the mtime of %s: %v", s.name, p, err)
	}
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatalf("%s: read back %s: %v", s.name, p, err)
	}
	s.last[p] = string(b)
	written[string(b)] = true
}

func checkTwoMounts(t *testing.T, root string, sides []*twoSide, written map[string]bool, status func(*twoSide) mountStatus) {
	t.Helper()
	onServer := map[string]string{} // content: a path holding it
	var copies []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if target.IsTempName(d.Name()) {
			t.Errorf("a temporary upload is left on the server: %s", rel)
		}
		if strings.Contains(d.Name(), ".conflict-") {
			copies = append(copies, rel)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !written[string(b)] {
			t.Errorf("%s on the server holds %q, which nobody wrote whole", rel, b)
		}
		onServer[string(b)] = rel
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sides {
		for p, c := range s.last {
			if _, ok := onServer[c]; !ok {
				t.Errorf("%s's last version of %s (%q) is nowhere on the server; it holds:%s", s.name, p, c, serverTree(onServer))
			}
		}
	}
	listed := map[string]bool{}
	for _, s := range sides {
		for _, c := range status(s).Unresolved {
			listed[c.Copy] = true
		}
	}
	for _, c := range copies {
		if !listed[c] {
			t.Errorf("the conflict copy %s on the server is listed by neither side's status", c)
		}
	}
}

func serverTree(onServer map[string]string) string {
	var lines []string
	for c, p := range onServer {
		lines = append(lines, fmt.Sprintf("\n  %s: %q", p, c))
	}
	sort.Strings(lines)
	return strings.Join(lines, "")
}

// waitOnlyUploads waits until the mount's queue holds nothing but uploads
// waiting for --write-back.
func waitOnlyUploads(t *testing.T, bin, mnt string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(bin, "status", mnt, "--json").CombinedOutput()
		var st mountStatus
		if err != nil || json.Unmarshal(out, &st) != nil {
			t.Fatalf("status %s: %v\n%s", mnt, err, out)
		}
		q := st.Queue
		if q.Loaded && q.Pending == q.PendingUploads && len(q.Running) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still runs operations other than uploads after 30s: %+v", mnt, q)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
