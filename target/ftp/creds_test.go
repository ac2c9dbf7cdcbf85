package ftp

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// credsFixture holds a temp dir and a logger whose lines the test can read.
type credsFixture struct {
	dir  string
	log  *logrus.Logger
	hook *test.Hook
}

func newCredsFixture(t *testing.T) *credsFixture {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	return &credsFixture{dir: t.TempDir(), log: log, hook: hook}
}

func (f *credsFixture) write(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// logged joins every log line with its fields, for searching.
func (f *credsFixture) logged() string {
	var b strings.Builder
	for _, e := range f.hook.AllEntries() {
		fmt.Fprintf(&b, "%s %s %v\n", e.Level, e.Message, e.Data)
	}
	return b.String()
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustEndpoint(t *testing.T, raw string) Endpoint {
	t.Helper()
	ep, err := ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestResolvePasswordOrder(t *testing.T) {
	f := newCredsFixture(t)
	pwFile := f.write(t, "pw", "from-file\r\nsecond line\n", 0o600)
	netrc := f.write(t, "netrc", "machine host login alice password from-netrc\n", 0o600)
	env := envOf(map[string]string{PasswordEnv: "from-env"})
	noEnv := envOf(nil)
	withURL := mustEndpoint(t, "ftp://alice:from-url@host:2121/site")
	plain := mustEndpoint(t, "ftp://alice@host/site")

	tests := []struct {
		name   string
		ep     Endpoint
		file   string
		env    func(string) string
		netrc  string
		want   string
		logHas string
	}{
		{"env wins", withURL, pwFile, env, netrc, "from-env", "password in URL ignored"},
		{"file next", withURL, pwFile, noEnv, netrc, "from-file", "password in URL ignored"},
		{"netrc next, port ignored", withURL, "", noEnv, netrc, "from-netrc", "password in URL ignored"},
		{"url last", withURL, "", noEnv, filepath.Join(f.dir, "absent"), "from-url", "password in URL is visible in ps and shell history; use FTPSYNC_PASSWORD, --password-file or ~/.netrc"},
		{"nil env", plain, "", nil, netrc, "from-netrc", ""},
		{"nothing: empty", plain, "", noEnv, "", "", "no password found"},
		{"anonymous", mustEndpoint(t, "ftp://host/"), "", noEnv, "", "anonymous@", ""},
		{"ftp is anonymous", mustEndpoint(t, "ftp://FTP@host/"), "", noEnv, "", "anonymous@", ""},
		{"anonymous with env", mustEndpoint(t, "ftp://host/"), "", env, "", "from-env", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.hook.Reset()
			got, err := ResolvePassword(tt.ep, tt.file, tt.env, tt.netrc, f.log)
			if err != nil {
				t.Fatalf("ResolvePassword: %v", err)
			}
			if got != tt.want {
				t.Errorf("password = %q, want %q", got, tt.want)
			}
			logs := f.logged()
			if !strings.Contains(logs, tt.logHas) {
				t.Errorf("log %q does not say %q", logs, tt.logHas)
			}
			if got != "" && got != "anonymous@" && strings.Contains(logs, got) {
				t.Errorf("log shows the password: %q", logs)
			}
			if strings.Contains(logs, "from-url") {
				t.Errorf("log shows the URL password: %q", logs)
			}
		})
	}
}

func TestResolvePasswordNilLogger(t *testing.T) {
	ep := mustEndpoint(t, "ftp://alice:pw@host/")
	got, err := ResolvePassword(ep, "", nil, "", nil)
	if err != nil || got != "pw" {
		t.Fatalf("ResolvePassword = %q, %v", got, err)
	}
}

func TestPasswordFile(t *testing.T) {
	f := newCredsFixture(t)
	ep := mustEndpoint(t, "ftp://alice@host/")

	t.Run("world readable warns", func(t *testing.T) {
		f.hook.Reset()
		p := f.write(t, "open", "pw-open", 0o644)
		got, err := ResolvePassword(ep, p, nil, "", f.log)
		if err != nil || got != "pw-open" {
			t.Fatalf("ResolvePassword = %q, %v", got, err)
		}
		if !strings.Contains(f.logged(), "chmod 600") {
			t.Errorf("no warning about the mode: %q", f.logged())
		}
	})
	t.Run("private does not warn", func(t *testing.T) {
		f.hook.Reset()
		p := f.write(t, "private", "pw-private", 0o600)
		if _, err := ResolvePassword(ep, p, nil, "", f.log); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f.logged(), "chmod") {
			t.Errorf("warning for a private file: %q", f.logged())
		}
	})
	bad := []struct {
		name, content, want string
	}{
		{"empty", "", "empty first line"},
		{"blank first line", "\nsecret-below\n", "empty first line"},
		{"nul", "sec\x00ret\n", "NUL or CR"},
		{"cr inside", "sec\rret\n", "NUL or CR"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := f.write(t, tt.name, tt.content, 0o600)
			_, err := ResolvePassword(ep, p, nil, "", f.log)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v should name %s and say %q", err, p, tt.want)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sec\x00") {
				t.Errorf("error shows the content: %v", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		p := filepath.Join(f.dir, "nope")
		_, err := ResolvePassword(ep, p, nil, "", f.log)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := ResolvePassword(ep, f.dir, nil, "", f.log)
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		p := f.write(t, "large", strings.Repeat("x", maxSecretFile+1), 0o600)
		_, err := ResolvePassword(ep, p, nil, "", f.log)
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("error = %v", err)
		}
	})
	if os.Geteuid() != 0 {
		t.Run("unreadable", func(t *testing.T) {
			p := f.write(t, "locked", "pw", 0o000)
			_, err := ResolvePassword(ep, p, nil, "", f.log)
			if err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Fatalf("error = %v", err)
			}
		})
	}
}

func TestNetrcLookup(t *testing.T) {
	const netrc = `# a comment line: machine host login alice password from-comment
machine other.example.com login alice password other-pw
machine Host.Example.com
	login bob
	password bob-pw
machine host.example.com login alice password "with space \"and\" quote" account acct
macdef init
machine host.example.com login carol password from-macro
cd /pub

machine host.example.com login carol password carol-pw#not-a-comment
machine nologin.example.com password shared-pw
machine nopw.example.com login dave
machine ::1 login eve password eve-pw
default login anonymous password guest@
default login zed password default-pw
`
	entries, err := parseNetrc([]byte(netrc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, user string
		want       string
		ok         bool
	}{
		{"host.example.com", "bob", "bob-pw", true},
		{"HOST.example.com", "alice", `with space "and" quote`, true},
		{"host.example.com", "carol", "carol-pw#not-a-comment", true},
		{"host.example.com", "mallory", "", false},
		{"nologin.example.com", "anyone", "shared-pw", true},
		{"nopw.example.com", "dave", "", false},
		{"::1", "eve", "eve-pw", true},
		{"unknown.example.com", "anonymous", "guest@", true},
		{"unknown.example.com", "zed", "default-pw", true},
		{"unknown.example.com", "alice", "", false},
	}
	for _, tt := range tests {
		got, ok := lookupNetrc(entries, tt.host, tt.user)
		if got != tt.want || ok != tt.ok {
			t.Errorf("lookupNetrc(%s, %s) = %q, %v; want %q, %v", tt.host, tt.user, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNetrcThroughResolve(t *testing.T) {
	f := newCredsFixture(t)
	netrc := f.write(t, "netrc", "machine ::1 login eve password eve-pw\nmachine host login bob password bob-pw\n", 0o640)
	got, err := ResolvePassword(mustEndpoint(t, "ftp://eve@[::1]:2121/"), "", nil, netrc, f.log)
	if err != nil || got != "eve-pw" {
		t.Fatalf("IPv6 host: %q, %v", got, err)
	}
	if !strings.Contains(f.logged(), "netrc file is readable by group or others") {
		t.Errorf("no warning about the mode: %q", f.logged())
	}
	got, err = ResolvePassword(mustEndpoint(t, "ftp://alice@host/"), "", nil, netrc, f.log)
	if err != nil || got != "" {
		t.Fatalf("other login must not match: %q, %v", got, err)
	}
}

func TestNetrcErrors(t *testing.T) {
	f := newCredsFixture(t)
	ep := mustEndpoint(t, "ftp://alice@host/")
	tests := []struct {
		name, content, want string
	}{
		{"missing value", "machine host login alice password", `"password" at the end of the file has no value`},
		{"open quote", `machine host login alice password "s3cr3t`, "no closing"},
		{"control char", "machine host login alice password \"s3cr3t\rRMD /\"", "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.write(t, tt.name, tt.content, 0o600)
			_, err := ResolvePassword(ep, "", nil, p, f.log)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v should name %s and say %q", err, p, tt.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		_, err := ResolvePassword(ep, "", nil, f.dir, f.log)
		if err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestNetrcEdgeCases(t *testing.T) {
	tests := []struct {
		name, content string
		want          []netrcEntry
	}{
		{"empty", "", nil},
		{"only comments", "# x\n  # y password z\n", nil},
		{"keywords before machine", "login a password b\nmachine m login c password d", []netrcEntry{{machine: "m", login: "c", password: "d", hasPassword: true}}},
		{"unknown keyword ignored", "machine m port 21 login c password d", []netrcEntry{{machine: "m", login: "c", password: "d", hasPassword: true}}},
		{"macro to end of file", "macdef x\nmachine m login c password d\n", nil},
		{"macro crlf", "macdef x\r\nmachine m password no\r\n\r\nmachine m password yes", []netrcEntry{{machine: "m", password: "yes", hasPassword: true}}},
		{"empty quoted password", `machine m login c password ""`, []netrcEntry{{machine: "m", login: "c", hasPassword: true}}},
		{"hash inside a line", "machine m login c password #x", []netrcEntry{{machine: "m", login: "c", password: "#x", hasPassword: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNetrc([]byte(tt.content))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("parseNetrc = %+v, want %+v", got, tt.want)
			}
		})
	}
}
