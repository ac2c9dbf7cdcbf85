package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Our own listing parsers: jlaffaye/ftp's List() turns every listing into a
// time.Time and drops how exact that time is, which change detection needs
// (see target.Entry.Precision). The pool reads the raw MLSD or LIST bytes and
// hands them to parseListing.
//
// The line parsers share one convention for what they return:
//   - ok true, err nil: a file or directory to keep;
//   - ok false, err nil: a line that is expected and meaningless to us
//     ("." and "..", MLSD cdir/pdir, "total N", our own temporary files);
//   - err non-nil: a line left out that the user should hear about (a
//     symlink, a device, an unsafe name, a line we cannot read).
//
// Hostile servers are expected: every name passes target.ValidName and is
// valid UTF-8 before it is returned, sizes are never negative, and nothing in a
// line can make a parser panic or allocate more than the line's size.

var (
	errSymlink = errors.New("symbolic link left out: links cannot be followed safely")
	errSpecial = errors.New("special file (device, socket or pipe) left out")
)

// checkName decides on a name from a listing. Names must be valid UTF-8 as
// well as pass ValidName: they are shown to the kernel and to other tools as
// file names and written back to the server in UTF-8 mode, and a name in a
// legacy encoding would come back as a different (mangled) name, so a rename
// or upload would create a second file instead of touching the first.
func checkName(name string) (bool, error) {
	if name == "." || name == ".." {
		return false, nil
	}
	if err := target.ValidName(name); err != nil {
		return false, err
	}
	if !utf8.ValidString(name) {
		return false, fmt.Errorf("%w: not valid UTF-8 (the server may use a legacy encoding)", target.ErrInvalidName)
	}
	if target.IsTempName(name) {
		return false, nil
	}
	return true, nil
}

// parseMLSDLine reads one line of an MLSD reply (RFC 3659 section 7):
// "fact=value;fact=value; name". Fact names are case-insensitive; the name
// is everything after the first space, kept byte for byte. Directories of type
// cdir and pdir are not returned; symlinks and other types are errors.
func parseMLSDLine(line string) (target.Entry, bool, error) {
	e, name, typ, err := parseMLSTLine(line)
	if err != nil || typ == "cdir" || typ == "pdir" {
		return target.Entry{}, false, err
	}
	if ok, err := checkName(name); !ok || err != nil {
		return target.Entry{}, false, err
	}
	e.Name = name
	return e, true, nil
}

// parseMLSTLine reads the facts of one line in MLSD form ("facts SP
// pathname"; strip the single leading space of an MLST reply line first). It
// returns the pathname as given, unchecked, since MLST gives a full path, and
// the type: "file", "dir", "cdir" or "pdir" (the last two with IsDir set, as
// some servers call the directory an MLST names cdir). Any other type is an
// error.
func parseMLSTLine(line string) (e target.Entry, pathname, typ string, err error) {
	facts, pathname, found := strings.Cut(line, " ")
	if !found || pathname == "" {
		return e, "", "", errors.New("no name after the facts")
	}
	for _, f := range strings.Split(facts, ";") {
		if f == "" {
			continue
		}
		k, v, found := strings.Cut(f, "=")
		if !found {
			return e, "", "", fmt.Errorf("fact without '=': %.40q", f)
		}
		switch strings.ToLower(k) {
		case "type":
			typ = strings.ToLower(v)
		case "size":
			if e.Size, err = parseSize(v); err != nil {
				return e, "", "", err
			}
		case "modify":
			if e.ModTime, e.Precision, err = parseMLSDTime(v); err != nil {
				return e, "", "", err
			}
		case "unix.mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return e, "", "", fmt.Errorf("unix.mode %.20q is not octal", v)
			}
			e.Mode = os.FileMode(m).Perm()
		}
		// perm (RFC 3659 7.5.5) says what the login may do, not the mode
		// bits, so it does not fill Mode; other facts are not needed.
	}
	switch {
	case typ == "file":
	case typ == "dir" || typ == "cdir" || typ == "pdir":
		e.IsDir, e.Size = true, 0
	case typ == "":
		return e, "", "", errors.New("no type fact")
	case strings.HasPrefix(typ, "os.unix=symlink") || strings.HasPrefix(typ, "os.unix=slink"):
		return e, "", "", errSymlink
	default:
		return e, "", "", fmt.Errorf("type %.30q left out: neither file nor directory", typ)
	}
	return e, pathname, typ, nil
}

// parseSize accepts decimal digits only, so "-1" and "+1" are refused.
func parseSize(s string) (int64, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("size %.30q is not a number", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %.30q is out of range", s)
	}
	return n, nil
}

// parseMLSDTime reads YYYYMMDDHHMMSS[.fraction] in UTC. The precision follows
// the digits given: a second, or 10^-n seconds for n fraction digits (at
// most a nanosecond).
func parseMLSDTime(s string) (time.Time, time.Duration, error) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	bad := func() (time.Time, time.Duration, error) {
		return time.Time{}, 0, fmt.Errorf("modify %.40q is not YYYYMMDDHHMMSS[.sss]", s)
	}
	if len(whole) != 14 || strings.Trim(whole, "0123456789") != "" {
		return bad()
	}
	t, err := time.ParseInLocation("20060102150405", whole, time.UTC)
	if err != nil {
		return bad()
	}
	if !hasFrac {
		return t, time.Second, nil
	}
	if frac == "" || strings.Trim(frac, "0123456789") != "" {
		return bad()
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	ns, _ := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
	prec := time.Duration(math.Pow10(9 - len(frac)))
	return t.Add(time.Duration(ns)), prec, nil
}

// maxProblems bounds the problem report of one listing: a hostile or broken
// server must not flood the log.
const maxProblems = 50

// maxProblemLine is how much of a left-out line a problem report quotes.
const maxProblemLine = 200

// parseListing parses a whole MLSD (mlsd true) or LIST reply. Lines end in
// "\r\n" or "\n". It returns the files and directories to show and one short
// problem string per line left out that the user should hear of (see the
// line parsers' convention; "." and "..", cdir/pdir, "total" and our own
// temporary files are left out silently). A name listed twice is kept once,
// first come first kept, so a hostile server cannot make one name both a file
// and a directory.
func parseListing(data []byte, mlsd bool, now time.Time, loc *time.Location) (entries []target.Entry, problems []string) {
	seen := make(map[string]bool)
	dropped := 0
	report := func(line string, err error) {
		if len(problems) >= maxProblems {
			dropped++
			return
		}
		problems = append(problems, quoteClipped(line, maxProblemLine)+": "+clip(err.Error(), maxProblemLine))
	}
	for len(data) > 0 {
		var raw []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			raw, data = data[:i], data[i+1:]
		} else {
			raw, data = data, nil
		}
		line := strings.TrimSuffix(string(raw), "\r")
		if line == "" {
			continue
		}
		var (
			e   target.Entry
			ok  bool
			err error
		)
		if mlsd {
			e, ok, err = parseMLSDLine(line)
		} else {
			e, ok, err = parseLISTLine(line, now, loc)
		}
		switch {
		case err != nil:
			report(line, err)
		case !ok:
		case seen[e.Name]:
			report(line, errors.New("name listed twice; the first is kept"))
		default:
			seen[e.Name] = true
			entries = append(entries, e)
		}
	}
	if dropped > 0 {
		problems = append(problems, fmt.Sprintf("%d more lines left out", dropped))
	}
	return entries, problems
}

// clip cuts s to at most n bytes at a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// quoteClipped quotes s with %q in at most n characters, cutting s and
// marking the cut where needed: a line of invalid bytes quadruples when
// quoted, so cutting the line first is not enough.
func quoteClipped(s string, n int) string {
	q := strconv.Quote(s)
	for cut := len(s); len(q) > n && cut > 0; {
		// Every byte quotes to at most 4 characters.
		cut -= min(cut, (len(q)-n+3)/4)
		q = strconv.Quote(s[:cut]) + "..."
	}
	return q
}
