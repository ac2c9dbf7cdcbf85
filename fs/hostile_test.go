package fs

import (
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/fakeftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// TestHostileNamesThroughMount mounts a scripted server whose listing holds
// traversal and unsafe names: the mount shows the safe entries only, reads
// them, and nothing appears beside the mount point.
func TestHostileNamesThroughMount(t *testing.T) {
	const mod = "modify=20250102030405"
	listing := "type=file;size=2;" + mod + "; ok.txt\r\n" +
		"type=dir;" + mod + "; ..\r\n" +
		"type=file;size=1;" + mod + "; ../x\r\n" +
		"type=dir;" + mod + "; ../../etc\r\n" +
		"type=file;size=1;" + mod + "; a/b\r\n" +
		"type=file;size=1;" + mod + "; nul\x00x\r\n" +
		"type=file;size=1;" + mod + "; cr\rx\r\n" +
		"type=file;size=1;" + mod + "; \xff\xfe.txt\r\n" +
		"type=dir;" + mod + "; sub\r\n"
	srv := fakeftp.Start(t, fakeftp.Options{
		Files: map[string][]byte{"/ok.txt": []byte("ok"), "/sub/in.txt": []byte("in"), "/x": []byte("outside")},
		Listing: func(cmd, dir string) io.Reader {
			switch dir {
			case "/":
				return strings.NewReader(listing)
			case "/sub":
				return strings.NewReader("type=file;size=2;" + mod + "; in.txt\r\ntype=pdir;" + mod + "; ..\r\n")
			}
			return strings.NewReader("")
		},
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	tg, err := ftp.New(t.Context(), ftp.Options{URL: srv.URL(), Password: "pw", Timeout: 2 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	m := mount(t, mountOpts{target: tg, readOnly: true})
	before, err := os.ReadDir(filepath.Dir(m.dir))
	if err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	sort.Strings(names)
	if got := strings.Join(names, ","); got != "ok.txt,sub" {
		t.Errorf("the mount lists %q, want ok.txt,sub", got)
	}
	for p, want := range map[string]string{"ok.txt": "ok", "sub/in.txt": "in"} {
		if got, err := os.ReadFile(filepath.Join(m.dir, p)); err != nil || string(got) != want {
			t.Errorf("read %s: %q, %v", p, got, err)
		}
	}
	// The server has /x, but only "../x" names it: nothing shows it.
	for _, p := range []string{"x", "a", "etc"} {
		if _, err := os.Lstat(filepath.Join(m.dir, p)); err == nil {
			t.Errorf("%s exists in the mount", p)
		}
	}
	after, err := os.ReadDir(filepath.Dir(m.dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the mount point's parent changed: %d entries, then %d", len(before), len(after))
	}
	for _, c := range srv.Commands() {
		if strings.Contains(c, "..") || strings.Contains(c, "etc") {
			t.Errorf("the server was sent %q", c)
		}
	}
}
