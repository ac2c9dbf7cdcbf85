package ftp

import (
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/internal/remote"
)

// Native fuzz tests of everything that reads bytes a server or a user
// controls. Seeds live in testdata/fuzz/<name>/; run one with, e.g.,
// go test -run '^$' -fuzz '^FuzzParseLISTLine$' -fuzztime 20s ./target/ftp/

// checkParsedEntry asserts what every line parser promises of a kept entry.
func checkParsedEntry(t *testing.T, line string, e target.Entry, ok bool, err error) {
	t.Helper()
	if !ok {
		if e != (target.Entry{}) {
			t.Fatalf("%q: left out but returned %+v", line, e)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q: kept with error %v", line, err)
	}
	if err := target.ValidName(e.Name); err != nil {
		t.Fatalf("%q: kept an invalid name: %v", line, err)
	}
	if !utf8.ValidString(e.Name) || target.IsTempName(e.Name) {
		t.Fatalf("%q: kept name %q", line, e.Name)
	}
	if !strings.HasSuffix(line, e.Name) {
		t.Fatalf("%q: name %q is not the end of the line", line, e.Name)
	}
	if e.Size < 0 || (e.IsDir && e.Size != 0) {
		t.Fatalf("%q: size %d (dir %v)", line, e.Size, e.IsDir)
	}
	if !e.ModTime.IsZero() && (e.ModTime.Location() != time.UTC || e.Precision <= 0) {
		t.Fatalf("%q: time %v with precision %v", line, e.ModTime, e.Precision)
	}
	if e.Mode&^0o777 != 0 {
		t.Fatalf("%q: mode %v holds more than permission bits", line, e.Mode)
	}
}

// checkListing parses the line twice as a listing: duplicates must collapse
// and every entry and problem must respect the same promises and bounds.
func checkListing(t *testing.T, line string, mlsd bool, now time.Time, loc *time.Location) {
	t.Helper()
	entries, problems := parseListing([]byte(line+"\r\n"+line), mlsd, now, loc)
	lines := 2 * (strings.Count(line, "\n") + 1)
	if len(entries) > lines/2 || len(problems) > lines {
		t.Fatalf("%q listed twice gave %d entries and %d problems", line, len(entries), len(problems))
	}
	seen := make(map[string]bool)
	for _, e := range entries {
		checkParsedEntry(t, e.Name, e, true, nil)
		if seen[e.Name] {
			t.Fatalf("%q: %q listed twice", line, e.Name)
		}
		seen[e.Name] = true
	}
	for _, p := range problems {
		if len(p) > 2*maxProblemLine+5 {
			t.Fatalf("problem of %d bytes", len(p))
		}
	}
}

func FuzzParseMLSDLine(f *testing.F) {
	for _, s := range []string{
		"modify=20230115103000;perm=adfr;size=1234;type=file;UNIX.mode=0644; report 2023.pdf",
		"type=cdir;modify=20230115103000; .",
		"Type=Dir;Modify=20230101120000.123; x y",
		"type=OS.unix=slink:/etc; l",
		"type=file;size=1; ../x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := parseMLSDLine(line)
		checkParsedEntry(t, line, e, ok, err)
		if ok && !e.ModTime.IsZero() && e.Precision > time.Second {
			t.Fatalf("%q: MLSD precision %v is coarser than a second", line, e.Precision)
		}
		checkListing(t, line, true, time.Time{}, nil)
	})
}

func FuzzParseLISTLine(f *testing.F) {
	for _, s := range []string{
		"drwxr-xr-x    2 1000     1000         4096 Jan 05 10:30 dir",
		"-rw-r--r--    1 1000     1000         1234 Jun 01  2021 old file.txt",
		"lrwxrwxrwx    1 0        0               7 Jan 15 10:30 link -> target",
		"-rw-r--r-- 1 u g 9 2023-05-06 07:08 iso name",
		"01-15-23  10:30AM       <DIR>          My Folder",
		"01-15-2023  14:05                 1234 f g",
		"total 12",
	} {
		f.Add(s)
	}
	now := time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line string) {
		e, ok, err := parseLISTLine(line, now, cet)
		checkParsedEntry(t, line, e, ok, err)
		if ok && e.Precision != time.Minute && e.Precision != 24*time.Hour {
			t.Fatalf("%q: LIST precision %v", line, e.Precision)
		}
		checkListing(t, line, false, now, cet)
	})
}

// rawPassword finds the password bytes of a URL that url.Parse accepted, the
// way url.Parse splits it: the scheme ends at the first ':', the authority
// after "//" at the first '/', '?' or '#', the user info at the last '@'.
func rawPassword(raw string) (start, end int, ok bool) {
	colon := strings.IndexByte(raw, ':')
	if colon < 0 || !strings.HasPrefix(raw[colon+1:], "//") {
		return 0, 0, false
	}
	authStart := colon + 3
	auth := raw[authStart:]
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return 0, 0, false
	}
	pc := strings.IndexByte(auth[:at], ':')
	if pc < 0 {
		return 0, 0, false
	}
	return authStart + pc + 1, authStart + at, true
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"ftp://alice@files.example.com/site",
		"ftps://bob:s3cret@[::1]:990/a%20b?tls=implicit",
		"ftp://host/%2F",
		"ftp://alice:12/ss@host",
		"http://u:p@h/",
		"ftp://host/a/../b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ep, err := ParseURL(raw)
		if err == nil {
			checkEndpoint(t, raw, ep)
		}
		// The outcome must not depend on the password, except that a
		// password with control characters is refused: then no message can
		// have been built from it.
		u, perr := url.Parse(raw)
		if perr != nil || u.User == nil {
			return
		}
		pw, has := u.User.Password()
		start, end, found := rawPassword(raw)
		if !has || pw == "" || !found {
			return
		}
		if remote.HasControl(pw) {
			if err == nil {
				t.Fatalf("%q: password with a control character accepted", raw)
			}
			return
		}
		ep2, err2 := ParseURL(raw[:start] + "zz" + raw[end:])
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("%q: outcome depends on the password: %v / %v", raw, err, err2)
		}
		if err == nil {
			if ep.URLPassword != pw || ep2.URLPassword != "zz" {
				t.Fatalf("%q: URLPassword %q / %q, want %q", raw, ep.URLPassword, ep2.URLPassword, pw)
			}
			ep.URLPassword, ep2.URLPassword = "", ""
			if ep != ep2 {
				t.Fatalf("%q: endpoint depends on the password: %+v / %+v", raw, ep, ep2)
			}
		}
	})
}

// checkEndpoint asserts the promises of a parsed endpoint; parsing String()
// back proves String holds no password.
func checkEndpoint(t *testing.T, raw string, ep Endpoint) {
	t.Helper()
	back, err := ParseURL(ep.String())
	want := ep
	want.URLPassword = ""
	if err != nil || back != want {
		t.Fatalf("%q: String %q parses back to %+v, %v; want %+v", raw, ep.String(), back, err, want)
	}
	if ep.User == "" || remote.HasControl(ep.User) || remote.HasControl(ep.URLPassword) {
		t.Fatalf("%q: user %q", raw, ep.User)
	}
	if ep.Root != "" && ep.Root != "/" {
		if _, err := target.CleanPath(ep.Root); err != nil || !strings.HasPrefix(ep.Root, "/") || strings.HasSuffix(ep.Root, "/") {
			t.Fatalf("%q: root %q: %v", raw, ep.Root, err)
		}
	}
	if !strings.HasPrefix(ep.RemotePath("x"), ep.Root) {
		t.Fatalf("%q: RemotePath(x) = %q outside %q", raw, ep.RemotePath("x"), ep.Root)
	}
}
