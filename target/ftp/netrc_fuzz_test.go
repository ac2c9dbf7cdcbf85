package ftp

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseNetrc feeds ~/.netrc contents to the parser: it must never
// panic, its errors must come from a fixed set that quotes no token of the
// file (a password must not reach a message), and what it parses must come
// back unchanged from a file written with quoted tokens. Seeds live in
// testdata/fuzz/FuzzParseNetrc/.
func FuzzParseNetrc(f *testing.F) {
	for _, s := range []string{
		"machine host login alice password s3cret\n",
		"default login anonymous password guest@\n",
		"machine h login \"a b\" password \"q\\\"uote\"\n",
		"macdef init\ncd /pub\n\nmachine h password p\n",
		"# comment\nmachine h\n\tlogin u\n\tpassword",
		"machine \"unterminated",
	} {
		f.Add([]byte(s))
	}
	allowed := map[string]bool{`a quoted token has no closing '"'`: true}
	for _, kw := range []string{"machine", "login", "password", "account", "macdef"} {
		allowed[strconv.Quote(kw)+" at the end of the file has no value"] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseNetrc(data)
		if err != nil {
			if !allowed[err.Error()] {
				t.Fatalf("error %q is not one of the fixed messages", err)
			}
			return
		}
		if len(entries) > len(data)/7+1 {
			t.Fatalf("%d entries from %d bytes", len(entries), len(data))
		}
		again, err := parseNetrc([]byte(writeNetrc(entries)))
		if err != nil || len(again) != len(entries) {
			t.Fatalf("written back: %d entries, %v; want %d", len(again), err, len(entries))
		}
		for i := range entries {
			if again[i] != entries[i] {
				t.Fatalf("entry %d: %+v written back as %+v", i, entries[i], again[i])
			}
			e := entries[i]
			if e.isDefault || e.login == "" {
				continue
			}
			// The first machine entry that fits wins, as in ftp(1).
			first := e
			for _, o := range entries[:i] {
				if !o.isDefault && strings.EqualFold(o.machine, e.machine) && (o.login == "" || o.login == e.login) {
					first = o
					break
				}
			}
			if pw, ok := lookupNetrc(entries, e.machine, e.login); pw != first.password || ok != first.hasPassword {
				t.Fatalf("lookup %q/%q = %q, %v; want %q, %v", e.machine, e.login, pw, ok, first.password, first.hasPassword)
			}
		}
	})
}

// writeNetrc writes entries with every token quoted.
func writeNetrc(entries []netrcEntry) string {
	q := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	var b strings.Builder
	for _, e := range entries {
		if e.isDefault {
			b.WriteString("default")
		} else {
			b.WriteString("machine " + q(e.machine))
		}
		if e.login != "" {
			b.WriteString(" login " + q(e.login))
		}
		if e.hasPassword {
			b.WriteString(" password " + q(e.password))
		}
		b.WriteString("\n")
	}
	return b.String()
}
