package ftp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

func utc(y int, m time.Month, d, hh, mm, ss, ns int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, ns, time.UTC)
}

// checkEntry compares two entries, requiring a UTC ModTime.
func checkEntry(t *testing.T, line string, got, want target.Entry) {
	t.Helper()
	if !got.ModTime.IsZero() && got.ModTime.Location() != time.UTC {
		t.Errorf("%q: ModTime %v is not UTC", line, got.ModTime)
	}
	if got.Name != want.Name || got.IsDir != want.IsDir || got.Size != want.Size ||
		!got.ModTime.Equal(want.ModTime) || got.Precision != want.Precision || got.Mode != want.Mode {
		t.Errorf("%q:\n got %+v\nwant %+v", line, got, want)
	}
}

func TestParseMLSDLine(t *testing.T) {
	tests := []struct {
		line string
		want target.Entry
	}{
		{ // proftpd
			"modify=20230115103000;perm=adfr;size=1234;type=file;unique=FD00U1234;UNIX.group=1000;UNIX.groupname=alice;UNIX.mode=0644;UNIX.owner=1000;UNIX.ownername=alice; report 2023.pdf",
			target.Entry{Name: "report 2023.pdf", Size: 1234, ModTime: utc(2023, 1, 15, 10, 30, 0, 0), Precision: time.Second, Mode: 0o644},
		},
		{ // proftpd directory: size facts of directories are not sizes of content
			"modify=20230115103000;perm=flcdmpe;type=dir;unique=FD00U2;UNIX.group=1000;UNIX.mode=02755;UNIX.owner=1000;sizd=4096; photos",
			target.Entry{Name: "photos", IsDir: true, ModTime: utc(2023, 1, 15, 10, 30, 0, 0), Precision: time.Second, Mode: 0o755},
		},
		{ // pure-ftpd
			"type=file;size=5;modify=20230101120000;UNIX.mode=0600;UNIX.uid=1000;UNIX.gid=1000;unique=801g3a0f; a.txt",
			target.Entry{Name: "a.txt", Size: 5, ModTime: utc(2023, 1, 1, 12, 0, 0, 0), Precision: time.Second, Mode: 0o600},
		},
		{ // FileZilla/IIS style: milliseconds, mixed-case fact names
			"Type=File;Size=10;Modify=20230101120000.123;Perm=rw; x.txt",
			target.Entry{Name: "x.txt", Size: 10, ModTime: utc(2023, 1, 1, 12, 0, 0, 123e6), Precision: time.Millisecond},
		},
		{ // more than nanosecond digits are cut
			"type=file;size=0;modify=20230101120000.1234567891; ns",
			target.Entry{Name: "ns", ModTime: utc(2023, 1, 1, 12, 0, 0, 123456789), Precision: time.Nanosecond},
		},
		{ // no modify: zero time, precision 0, caller falls back to MDTM
			"type=file;size=3; no time",
			target.Entry{Name: "no time", Size: 3},
		},
		{ // spaces in the name are kept, including leading and trailing ones
			"type=file;size=1;modify=20230101120000;  two  spaces ",
			target.Entry{Name: " two  spaces ", Size: 1, ModTime: utc(2023, 1, 1, 12, 0, 0, 0), Precision: time.Second},
		},
		{ // a name with '=' and ';' after the first space is a name
			"type=file;size=2; a=b;c",
			target.Entry{Name: "a=b;c", Size: 2},
		},
		{ // the largest size
			"type=file;size=9223372036854775807; big",
			target.Entry{Name: "big", Size: 1<<63 - 1},
		},
		{"type=dir; .hidden", target.Entry{Name: ".hidden", IsDir: true}},
		{"type=file;size=1; été ☃", target.Entry{Name: "été ☃", Size: 1}},
	}
	for _, tt := range tests {
		e, ok, err := parseMLSDLine(tt.line)
		if err != nil || !ok {
			t.Errorf("%q: ok %v, err %v", tt.line, ok, err)
			continue
		}
		checkEntry(t, tt.line, e, tt.want)
	}
}

func TestParseMLSDLineLeftOut(t *testing.T) {
	tests := []struct {
		line    string
		wantErr string // "" = left out silently
	}{
		{"modify=20230115103000;perm=flcdmpe;type=cdir;unique=FD00U1; .", ""},
		{"modify=20230115103000;perm=flcdmpe;type=pdir;unique=FD00U0; ..", ""},
		{"type=cdir; /home/alice", ""},
		{"type=file;size=1; " + target.TempName("x", "7"), ""},
		{"type=file;size=1; .", ""},
		{"type=dir; ..", ""},
		{"modify=20230115103000;perm=adfr;size=7;type=OS.unix=symlink;unique=FD1; link", "symbolic link"},
		{"modify=20230115103000;size=7;type=OS.unix=slink:/etc/passwd; link", "symbolic link"},
		{"type=OS.unix=chr-13/29; tty", "neither file nor directory"},
		{"type=file;size=1; ../x", "invalid name"},
		{"type=file;size=1; a/b", "invalid name"},
		{"type=dir; /etc", "invalid name"},
		{"type=file;size=1; a\x00b", "invalid name"},
		{"type=file;size=1; a\rb", "invalid name"},
		{"type=file;size=1; a\nb", "invalid name"},
		{"type=file;size=1; \xff\xfe.txt", "UTF-8"},
		{"type=file;size=1; ", "no name"},
		{"type=file;size=1;", "no name"},
		{"", "no name"},
		{" name without facts", "no type"},
		{"size=1;modify=20230101120000; untyped", "no type"},
		{"type=file;size=-1; neg", "not a number"},
		{"type=file;size=+1; plus", "not a number"},
		{"type=file;size=; empty", "not a number"},
		{"type=file;size=99999999999999999999; huge", "out of range"},
		{"type=file;modify=20231301000000; month 13", "modify"},
		{"type=file;modify=2023010112; short", "modify"},
		{"type=file;modify=20230101120000.; dot", "modify"},
		{"type=file;modify=20230101120000.1a; frac", "modify"},
		{"type=file;unix.mode=0999; mode", "octal"},
		{"type=file;garbage; g", "without '='"},
	}
	for _, tt := range tests {
		e, ok, err := parseMLSDLine(tt.line)
		if ok {
			t.Errorf("%q: kept as %+v", tt.line, e)
			continue
		}
		if tt.wantErr == "" && err != nil {
			t.Errorf("%q: error %v, want a silent skip", tt.line, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: error %v, want %q", tt.line, err, tt.wantErr)
		}
	}
	if _, _, err := parseMLSDLine("type=file; a/b"); !errors.Is(err, target.ErrInvalidName) {
		t.Errorf("invalid name error %v does not match target.ErrInvalidName", err)
	}
}

func TestParseMLSTLine(t *testing.T) {
	e, p, typ, err := parseMLSTLine("type=cdir;modify=20230101120000;UNIX.mode=0755; /home/alice/site")
	if err != nil || p != "/home/alice/site" || typ != "cdir" || !e.IsDir || e.Mode != 0o755 {
		t.Fatalf("parseMLSTLine = %+v, %q, %q, %v", e, p, typ, err)
	}
	e, p, typ, err = parseMLSTLine("type=file;size=12;modify=20230101120000; /site/a b.txt")
	if err != nil || p != "/site/a b.txt" || typ != "file" || e.Size != 12 || e.Name != "" {
		t.Fatalf("parseMLSTLine = %+v, %q, %q, %v", e, p, typ, err)
	}
}

// cet is a fixed server zone for LIST times, one hour east of UTC.
var cet = time.FixedZone("CET", 3600)

func TestParseLISTLine(t *testing.T) {
	now := time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		line string
		want target.Entry
	}{
		{ // vsftpd, recent: minute precision, server time in CET
			"drwxr-xr-x    2 1000     1000         4096 Jan 05 10:30 dir",
			target.Entry{Name: "dir", IsDir: true, ModTime: utc(2024, 1, 5, 9, 30, 0, 0), Precision: time.Minute, Mode: 0o755},
		},
		{ // vsftpd, old: day precision, start of the day in the server zone
			"-rw-r--r--    1 1000     1000         1234 Jun 01  2021 old file.txt",
			target.Entry{Name: "old file.txt", Size: 1234, ModTime: utc(2021, 5, 31, 23, 0, 0, 0), Precision: 24 * time.Hour, Mode: 0o644},
		},
		{ // last year: Dec 31 is in the future this year
			"-rw-r--r--   1 alice    alice        1234 Dec 31 23:59 report.pdf",
			target.Entry{Name: "report.pdf", Size: 1234, ModTime: utc(2023, 12, 31, 22, 59, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // slightly in the future (clock skew): still this year
			"-rw-r--r--   1 alice    alice        1 Jan 11 08:00 skew",
			target.Entry{Name: "skew", Size: 1, ModTime: utc(2024, 1, 11, 7, 0, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // five and a half months ahead is this year, seven is last year
			"-rw-r--r--   1 a b 1 Jun 25 08:00 june",
			target.Entry{Name: "june", Size: 1, ModTime: utc(2024, 6, 25, 7, 0, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{
			"-rw-r--r--   1 a b 1 Aug 10 08:00 august",
			target.Entry{Name: "august", Size: 1, ModTime: utc(2023, 8, 10, 7, 0, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // pure-ftpd
			"-rw-r--r--    1 1000       1000              5 Jan  9 10:30 a.txt",
			target.Entry{Name: "a.txt", Size: 5, ModTime: utc(2024, 1, 9, 9, 30, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // leading and inner spaces of a name are kept
			"-rw-------    1 1000     1000            3 Jan 09 10:30   two  spaces",
			target.Entry{Name: "  two  spaces", Size: 3, ModTime: utc(2024, 1, 9, 9, 30, 0, 0), Precision: time.Minute, Mode: 0o600},
		},
		{ // a name that looks like a date
			"-rw-r--r--    1 u g 7 Jan 09 10:30 Jan 09 10:30 x",
			target.Entry{Name: "Jan 09 10:30 x", Size: 7, ModTime: utc(2024, 1, 9, 9, 30, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // no group column, owner named like a month, ACL marker
			"-rwsr-x--T+ 1 jan 42 Mar 3 2020 setuid",
			target.Entry{Name: "setuid", Size: 42, ModTime: utc(2020, 3, 2, 23, 0, 0, 0), Precision: 24 * time.Hour, Mode: 0o750},
		},
		{ // ls --time-style=long-iso
			"-rw-r--r-- 1 u g 9 2023-05-06 07:08 iso name",
			target.Entry{Name: "iso name", Size: 9, ModTime: utc(2023, 5, 6, 6, 8, 0, 0), Precision: time.Minute, Mode: 0o644},
		},
		{ // IIS DOS format, 12-hour clock
			"01-15-23  10:30AM       <DIR>          My Folder",
			target.Entry{Name: "My Folder", IsDir: true, ModTime: utc(2023, 1, 15, 9, 30, 0, 0), Precision: time.Minute},
		},
		{
			"01-15-23  12:05PM                 1234 file.txt",
			target.Entry{Name: "file.txt", Size: 1234, ModTime: utc(2023, 1, 15, 11, 5, 0, 0), Precision: time.Minute},
		},
		{
			"12-31-99  12:05AM                    0 y2k",
			target.Entry{Name: "y2k", ModTime: utc(1999, 12, 30, 23, 5, 0, 0), Precision: time.Minute},
		},
		{ // IIS with four-digit years and a 24-hour clock
			"01-15-2023  14:05                 1234 f g",
			target.Entry{Name: "f g", Size: 1234, ModTime: utc(2023, 1, 15, 13, 5, 0, 0), Precision: time.Minute},
		},
		{
			"01-15-2023  02:05 PM  <dir>  spaced ampm",
			target.Entry{Name: "spaced ampm", IsDir: true, ModTime: utc(2023, 1, 15, 13, 5, 0, 0), Precision: time.Minute},
		},
	}
	for _, tt := range tests {
		e, ok, err := parseLISTLine(tt.line, now, cet)
		if err != nil || !ok {
			t.Errorf("%q: ok %v, err %v", tt.line, ok, err)
			continue
		}
		checkEntry(t, tt.line, e, tt.want)
	}
}

func TestParseLISTLineLeapDay(t *testing.T) {
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	e, ok, err := parseLISTLine("-rw-r--r-- 1 u g 1 Feb 29 10:00 leap", now, nil)
	if err != nil || !ok || !e.ModTime.Equal(utc(2024, 2, 29, 10, 0, 0, 0)) {
		t.Fatalf("Feb 29 in 2025: %+v, %v, %v", e, ok, err)
	}
}

func TestParseLISTLineLeftOut(t *testing.T) {
	now := time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		line    string
		wantErr string // "" = left out silently
	}{
		{"total 12", ""},
		{"total 0", ""},
		{"drwxr-xr-x    3 0        0            4096 Jan 15 10:30 .", ""},
		{"drwxr-xr-x    3 0        0            4096 Jan 15 10:30 ..", ""},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 " + target.TempName("a", "1"), ""},
		{"lrwxrwxrwx    1 0        0               7 Jan 15 10:30 link -> target", "symbolic link"},
		{"crw-rw-rw-    1 0        0          1,   3 Jan 15 10:30 null", "special file"},
		{"prw-r--r--    1 0        0               0 Jan 15 10:30 fifo", "special file"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 a/b", "invalid name"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 ../x", "invalid name"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 a\x00b", "invalid name"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 a\rb", "invalid name"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 \xe9t\xe9", "UTF-8"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30 ", "no name"},
		{"-rw-r--r--    1 0        0               1 Jan 15 10:30", "no name"},
		{"-rw-r--r--    1 0        0               12", "no size and date"},
		{"-rw-r--r--    1 0        0               -5 Jan 15 10:30 neg", "no size and date"},
		{"-rw-r--r--    1 0        0  99999999999999999999 Jan 15 10:30 huge", "no size and date"},
		{"-rw-r--r--    1 0        0               1 Feb 30 10:30 feb30", "no size and date"},
		{"-rw-r--r--    1 0        0               1 Jan 15 24:00 hour", "no size and date"},
		{"-rw-r--r--    1 0        0               1 Mär 15 10:30 german", "no size and date"},
		{"-rw-r--r-    1 0        0               1 Jan 15 10:30 short perms", "not a listing line"},
		{"-rw-r--r--x   1 0        0               1 Jan 15 10:30 long perms", "not a listing line"},
		{"-rwqr--r--    1 0        0               1 Jan 15 10:30 bad perms", "not a listing line"},
		{"?rw-r--r--    1 0        0               1 Jan 15 10:30 bad type", "not a listing line"},
		{"", "not a listing line"},
		{"   ", "not a listing line"},
		{"550 No files found", "not a listing line"},
		{"01-15-23  10:30AM       <DIR>", "not a listing line"},
		{"01-15-23  10:30AM       <DIR>          ..", ""},
		{"01-15-23  13:30PM                 1 pm13", "date or time"},
		{"13-15-23  10:30AM                 1 month13", "date or time"},
		{"02-30-23  10:30AM                 1 feb30", "date or time"},
		{"01-15-123  10:30AM                1 year3", "date or time"},
		{"01-15-23  10:30AM                -1 neg", "not a number"},
		{"01-15-23  10:30AM  99999999999999999999 huge", "out of range"},
		{"01-15-23  10:30AM                 1 a/b", "invalid name"},
		{"01-15-23  10:30AM                 1    ", "not a listing line"},
	}
	for _, tt := range tests {
		e, ok, err := parseLISTLine(tt.line, now, cet)
		if ok {
			t.Errorf("%q: kept as %+v", tt.line, e)
			continue
		}
		if tt.wantErr == "" && err != nil {
			t.Errorf("%q: error %v, want a silent skip", tt.line, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: error %v, want %q", tt.line, err, tt.wantErr)
		}
	}
}

func TestParsePerms(t *testing.T) {
	tests := map[string]os.FileMode{
		"rwxr-xr-x": 0o755, "---------": 0, "rwsrwsrwt": 0o777, "rwSrwSrwT": 0o666, "r--r-l---": 0o440,
	}
	for p, want := range tests {
		if got, ok := parsePerms(p); !ok || got != want {
			t.Errorf("parsePerms(%q) = %o, %v; want %o", p, got, ok, want)
		}
	}
	for _, p := range []string{"xwrr-xr-x", "rwx rwxrw", "rwxrwxrwZ"} {
		if _, ok := parsePerms(p); ok {
			t.Errorf("parsePerms(%q) accepted", p)
		}
	}
}

func TestParseListing(t *testing.T) {
	now := time.Date(2024, 1, 10, 12, 0, 0, 0, time.UTC)
	mlsd := "type=cdir;modify=20230101120000; .\r\n" +
		"type=pdir;modify=20230101120000; ..\r\n" +
		"type=file;size=1;modify=20230101120000; a\r\n" +
		"type=dir;modify=20230101120000; b c\r\n" +
		"type=dir;modify=20230101120000; a\r\n" + // same name again: first kept
		"type=file;size=1; ../../etc/passwd\r\n" +
		"type=OS.unix=symlink; l\r\n" +
		"type=file;size=1; " + target.TempName("a", "9") + "\r\n" +
		"\r\n" +
		"type=file;size=2; last" // no line end
	entries, problems := parseListing([]byte(mlsd), true, now, time.UTC)
	var names []string
	for _, e := range entries {
		names = append(names, fmt.Sprintf("%s:%v", e.Name, e.IsDir))
	}
	if got := strings.Join(names, ","); got != "a:false,b c:true,last:false" {
		t.Errorf("entries = %s", got)
	}
	wantProblems := []struct{ line, reason string }{
		{"type=dir;modify=20230101120000; a", "name listed twice; the first is kept"},
		{"type=file;size=1; ../../etc/passwd", "invalid name"},
		{"type=OS.unix=symlink; l", "symbolic link left out"},
	}
	if len(problems) != len(wantProblems) {
		t.Fatalf("problems = %q", problems)
	}
	for i, w := range wantProblems {
		if !strings.HasPrefix(problems[i], fmt.Sprintf("%q: ", w.line)) || !strings.Contains(problems[i], w.reason) {
			t.Errorf("problem %d = %q, want %q with %q", i, problems[i], w.line, w.reason)
		}
	}

	list := "total 8\n" +
		"drwxr-xr-x 2 0 0 4096 Jan 05 10:30 .\n" +
		"drwxr-xr-x 2 0 0 4096 Jan 05 10:30 ..\n" +
		"-rw-r--r-- 1 0 0 3 Jan 05 10:30 x\r\n" +
		"garbage line\n"
	entries, problems = parseListing([]byte(list), false, now, nil)
	if len(entries) != 1 || entries[0].Name != "x" || entries[0].Size != 3 {
		t.Errorf("entries = %+v", entries)
	}
	if len(problems) != 1 || !strings.HasPrefix(problems[0], `"garbage line": not a listing line`) {
		t.Errorf("problems = %q", problems)
	}
}

func TestParseListingBoundsProblems(t *testing.T) {
	long := strings.Repeat("x", 10000)
	var b strings.Builder
	for i := 0; i < maxProblems+30; i++ {
		b.WriteString("type=file;size=1; " + long + "/\n")
	}
	entries, problems := parseListing([]byte(b.String()), true, time.Now(), time.UTC)
	if len(entries) != 0 {
		t.Fatalf("entries = %d", len(entries))
	}
	if len(problems) != maxProblems+1 || problems[maxProblems] != "30 more lines left out" {
		t.Fatalf("%d problems, last %q", len(problems), problems[len(problems)-1])
	}
	for _, p := range problems {
		if len(p) > 2*maxProblemLine+5 {
			t.Fatalf("problem of %d bytes", len(p))
		}
	}
}

func TestQuoteClipped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"short", `"short"`},
		{"a\x00b", `"a\x00b"`},
		{strings.Repeat("x", 10), `"xxxxxxxxxx"`},
		{strings.Repeat("x", 11), `"xxxxxxx"...`},
		{strings.Repeat("\xff", 12), `"\xff"...`},
	}
	for _, tt := range tests {
		if got := quoteClipped(tt.in, 12); got != tt.want {
			t.Errorf("quoteClipped(%q, 12) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := clip("ééé", 3); got != "é..." {
		t.Errorf("clip cuts inside a rune: %q", got)
	}
}
