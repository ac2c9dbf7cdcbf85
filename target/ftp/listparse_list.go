package ftp

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// LIST parsing: the Unix "ls -l" form and IIS's DOS form. See listparse.go
// for what the line parsers return.

// parseLISTLine reads one line of a LIST reply in the Unix "ls -l" form
// (vsftpd, proftpd, pure-ftpd) or the DOS form of IIS. Times are in the
// server's zone loc (nil for UTC) and returned in UTC. "Mon DD HH:MM" has
// minute precision and no year: the year is the one that puts the date
// within six months of now, as ls only omits the year for such dates. "Mon
// DD  YYYY" is the start of that day, with precision 24h. Symlinks are errors
// (left out): following them could leave the tree, and a link's own size and
// time say nothing about its target. English month names only.
func parseLISTLine(line string, now time.Time, loc *time.Location) (target.Entry, bool, error) {
	if loc == nil {
		loc = time.UTC
	}
	if rest, ok := strings.CutPrefix(line, "total "); ok && strings.Trim(rest, " 0123456789") == "" {
		return target.Entry{}, false, nil
	}
	var (
		e    target.Entry
		name string
		err  error
	)
	if line != "" && line[0] >= '0' && line[0] <= '9' {
		e, name, err = parseDOSLine(line, loc)
	} else {
		e, name, err = parseUnixLine(line, now, loc)
	}
	if err != nil {
		return target.Entry{}, false, err
	}
	if ok, err := checkName(name); !ok || err != nil {
		return target.Entry{}, false, err
	}
	e.Name = name
	return e, true, nil
}

// lsField is a blank-separated word of a line and the offset just after it.
type lsField struct {
	s   string
	end int
}

// splitFields returns at most n fields of line, so that a long name does not
// cost an allocation per word.
func splitFields(line string, n int) []lsField {
	var out []lsField
	i := 0
	for len(out) < n {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		out = append(out, lsField{line[start:i], i})
	}
	return out
}

var errNotListing = errors.New("not a listing line we can read")

// unixFields bounds the search for the date: permissions, links, owner,
// group and size come first, and an owner or group may be missing or hold a
// month name; a date further right would be inside the file name.
const unixFields = 12

func parseUnixLine(line string, now time.Time, loc *time.Location) (target.Entry, string, error) {
	var e target.Entry
	f := splitFields(line, unixFields)
	if len(f) < 4 {
		return e, "", errNotListing
	}
	perms := f[0].s
	if len(perms) < 10 || strings.Trim(perms[10:], "+@.") != "" {
		return e, "", errNotListing
	}
	mode, ok := parsePerms(perms[1:10])
	if !ok {
		return e, "", errNotListing
	}
	switch perms[0] {
	case '-':
	case 'd':
		e.IsDir = true
	case 'l':
		return e, "", errSymlink
	case 'b', 'c', 'p', 's', 'D':
		return e, "", errSpecial
	default:
		return e, "", errNotListing
	}
	e.Mode = mode
	for i := 2; i+1 < len(f); i++ {
		size, err := parseSize(f[i-1].s)
		if err != nil {
			continue
		}
		c := ""
		if i+2 < len(f) {
			c = f[i+2].s
		}
		t, prec, n := parseUnixDate(f[i].s, f[i+1].s, c, now, loc)
		if n == 0 {
			continue
		}
		rest := line[f[i+n-1].end:]
		if len(rest) < 2 || (rest[0] != ' ' && rest[0] != '\t') {
			return e, "", errors.New("no name after the date")
		}
		if !e.IsDir {
			e.Size = size
		}
		e.ModTime, e.Precision = t.UTC(), prec
		return e, rest[1:], nil
	}
	return e, "", errors.New("no size and date where ls -l puts them")
}

// parsePerms reads the nine rwx characters into permission bits.
func parsePerms(p string) (os.FileMode, bool) {
	var m os.FileMode
	for i := 0; i < 9; i++ {
		bit := os.FileMode(1) << (8 - i)
		switch c := p[i]; {
		case c == '-':
		case c == "rwxrwxrwx"[i]:
			m |= bit
		case i%3 == 2 && (c == 's' || c == 't'):
			m |= bit
		case i%3 == 2 && (c == 'S' || c == 'T' || c == 'l'):
			// set-id or sticky without execute: no x bit
		default:
			return 0, false
		}
	}
	return m, true
}

var lsMonths = map[string]time.Month{
	"jan": time.January, "feb": time.February, "mar": time.March, "apr": time.April,
	"may": time.May, "jun": time.June, "jul": time.July, "aug": time.August,
	"sep": time.September, "oct": time.October, "nov": time.November, "dec": time.December,
}

// parseUnixDate reads "Mon DD HH:MM", "Mon DD YYYY" or the long-iso
// "YYYY-MM-DD HH:MM" from the words a, b, c and says how many words the date
// took (0 if none of these forms matched).
func parseUnixDate(a, b, c string, now time.Time, loc *time.Location) (time.Time, time.Duration, int) {
	if len(a) == 10 && len(b) == 5 {
		if t, err := time.ParseInLocation("2006-01-02 15:04", a+" "+b, loc); err == nil {
			return t, time.Minute, 2
		}
	}
	mon, ok := lsMonths[strings.ToLower(a)]
	if !ok {
		return time.Time{}, 0, 0
	}
	day, ok := smallNumber(b, 1, 2)
	if !ok {
		return time.Time{}, 0, 0
	}
	if len(c) == 4 {
		year, ok := smallNumber(c, 4, 4)
		if !ok {
			return time.Time{}, 0, 0
		}
		t, ok := validDate(year, mon, day, 0, 0, loc)
		if !ok {
			return time.Time{}, 0, 0
		}
		return t, 24 * time.Hour, 3
	}
	hh, mm, ok := strings.Cut(c, ":")
	if !ok {
		return time.Time{}, 0, 0
	}
	hour, ok1 := smallNumber(hh, 1, 2)
	min, ok2 := smallNumber(mm, 2, 2)
	if !ok1 || !ok2 || hour > 23 || min > 59 {
		return time.Time{}, 0, 0
	}
	// ls omits the year only for dates within six months of now: of the
	// years around now, take the valid date closest to it.
	var best time.Time
	y := now.In(loc).Year()
	for _, year := range []int{y - 1, y, y + 1} {
		t, ok := validDate(year, mon, day, hour, min, loc)
		if ok && (best.IsZero() || absDur(t.Sub(now)) < absDur(best.Sub(now))) {
			best = t
		}
	}
	if best.IsZero() {
		return time.Time{}, 0, 0
	}
	return best, time.Minute, 3
}

// validDate builds a date and refuses one that time.Date had to normalize
// (Feb 30, or Feb 29 in a common year).
func validDate(year int, mon time.Month, day, hour, min int, loc *time.Location) (time.Time, bool) {
	t := time.Date(year, mon, day, hour, min, 0, 0, loc)
	if t.Year() != year || t.Month() != mon || t.Day() != day {
		return time.Time{}, false
	}
	return t, true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// smallNumber parses minLen to maxLen decimal digits.
func smallNumber(s string, minLen, maxLen int) (int, bool) {
	if len(s) < minLen || len(s) > maxLen || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// parseDOSLine reads IIS's "MM-DD-YY  HH:MMPM  <DIR>  name" or
// "... 1234 name", with 2- or 4-digit years and 12- or 24-hour times. The
// name is what follows the blanks after the size: leading blanks of a name
// cannot be told from padding in this format.
func parseDOSLine(line string, loc *time.Location) (target.Entry, string, error) {
	var e target.Entry
	f := splitFields(line, 4)
	if len(f) < 4 || strings.Count(f[0].s, "-") != 2 {
		return e, "", errNotListing
	}
	date, clock, sizeIdx := f[0].s, f[1].s, 2
	if s := strings.ToUpper(f[2].s); s == "AM" || s == "PM" {
		clock += s
		sizeIdx = 3
		if f = splitFields(line, 5); len(f) < 5 {
			return e, "", errNotListing
		}
	}
	t, ok := parseDOSTime(date, clock, loc)
	if !ok {
		return e, "", errors.New("DOS listing date or time is invalid")
	}
	if strings.EqualFold(f[sizeIdx].s, "<DIR>") {
		e.IsDir = true
	} else {
		size, err := parseSize(f[sizeIdx].s)
		if err != nil {
			return e, "", err
		}
		e.Size = size
	}
	name := strings.TrimLeft(line[f[sizeIdx].end:], " \t")
	e.ModTime, e.Precision = t.UTC(), time.Minute
	return e, name, nil
}

func parseDOSTime(date, clock string, loc *time.Location) (time.Time, bool) {
	parts := strings.Split(date, "-")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	mon, ok1 := smallNumber(parts[0], 2, 2)
	day, ok2 := smallNumber(parts[1], 2, 2)
	year, ok3 := smallNumber(parts[2], 2, 4)
	if !ok1 || !ok2 || !ok3 || len(parts[2]) == 3 || mon < 1 || mon > 12 {
		return time.Time{}, false
	}
	if len(parts[2]) == 2 {
		year += 1900
		if year < 1970 {
			year += 100
		}
	}
	upper := strings.ToUpper(clock)
	pm := strings.HasSuffix(upper, "PM")
	ampm := pm || strings.HasSuffix(upper, "AM")
	if ampm {
		clock = clock[:len(clock)-2]
	}
	hh, mm, ok := strings.Cut(clock, ":")
	hour, ok1 := smallNumber(hh, 1, 2)
	min, ok2 := smallNumber(mm, 2, 2)
	if !ok || !ok1 || !ok2 || min > 59 || hour > 23 || (ampm && (hour < 1 || hour > 12)) {
		return time.Time{}, false
	}
	if ampm {
		hour %= 12
		if pm {
			hour += 12
		}
	}
	return validDate(year, time.Month(mon), day, hour, min, loc)
}
