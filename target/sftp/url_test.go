package sftp

import (
	"errors"
	"strings"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want Endpoint
		str  string // String(); "" means raw
		id   string
	}{
		{"sftp://alice@Files.Example.com/srv/site", Endpoint{Host: "files.example.com:22", User: "alice", Root: "/srv/site"},
			"sftp://alice@files.example.com:22/srv/site", "sftp:files.example.com/srv/site"},
		{"sftp://alice@host:2222", Endpoint{Host: "host:2222", User: "alice"},
			"sftp://alice@host:2222", "sftp:host:2222/~alice"},
		{"sftp://alice@host/", Endpoint{Host: "host:22", User: "alice"},
			"sftp://alice@host:22", "sftp:host/~alice"},
		{"sftp://alice@host/%2F", Endpoint{Host: "host:22", User: "alice", Root: "/"},
			"sftp://alice@host:22/%2F", "sftp:host/"},
		{"sftp://alice:pw%40x@[::1]:2222/a%20b/%C3%A9", Endpoint{Host: "[::1]:2222", User: "alice", URLPassword: "pw@x", Root: "/a b/é"},
			"sftp://alice@[::1]:2222/a%20b/%C3%A9", "sftp:[::1]:2222/a b/é"},
		{"sftp://bob@host//double//slashes/", Endpoint{Host: "host:22", User: "bob", Root: "/double/slashes"},
			"sftp://bob@host:22/double/slashes", "sftp:host/double/slashes"},
		{"sftp://bob@host/mail%40home", Endpoint{Host: "host:22", User: "bob", Root: "/mail@home"},
			"sftp://bob@host:22/mail%40home", "sftp:host/mail@home"},
	} {
		got, err := ParseURL(c.raw)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.raw, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.raw, got, c.want)
		}
		if s := got.String(); s != c.str {
			t.Errorf("ParseURL(%q).String() = %q, want %q", c.raw, s, c.str)
		}
		if id := got.ID(); id != c.id {
			t.Errorf("ParseURL(%q).ID() = %q, want %q", c.raw, id, c.id)
		}
		back, err := ParseURL(got.String())
		if want := got; err != nil || back != (Endpoint{Host: want.Host, User: want.User, Root: want.Root}) {
			t.Errorf("ParseURL(String()) of %q = %+v, %v; want the same endpoint without password", c.raw, back, err)
		}
	}
}

func TestParseURLDefaultUser(t *testing.T) {
	t.Setenv("USER", "fallback")
	ep, err := ParseURL("sftp://host/x")
	if err != nil {
		t.Fatal(err)
	}
	if ep.User == "" {
		t.Error("no user in the URL gave an empty user; want the local user's name")
	}
}

func TestParseURLErrors(t *testing.T) {
	const secret = "Secr3tPw"
	for _, raw := range []string{
		"", "host/path", "ftp://alice@host/", "sftp:opaque", "sftp:///path", "sftp://alice@/path",
		"sftp://alice@host:0/", "sftp://alice@host:65536/", "sftp://alice@host:port/", "sftp://alice@host:/",
		"sftp://alice@host/a/../b", "sftp://alice@host/a/%2E%2E/b", "sftp://alice@host/a%2Fb", "sftp://alice@host/a%00b",
		"sftp://alice@host/x?y=1", "sftp://alice:" + secret + "@host/x#frag", "sftp://alice:" + secret + "#x@host/",
		"sftp://alice:Secr3t/Pw@host/", "sftp://a%0Alice@host/", "sftp://alice:Secr3t%0APw@host/",
		"sftp://a::1/", "sftp://alice@ho st/", "sftp://alice@host/~/site", "sftp://alice@host/~alice",
	} {
		ep, err := ParseURL(raw)
		if err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", raw, ep)
			continue
		}
		if strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("ParseURL(%q): the error %q shows the password", raw, err)
		}
	}
	if _, err := ParseURL("sftp://alice@host/a/../b"); !errors.Is(err, target.ErrInvalidName) {
		t.Errorf("a '..' in the path: %v, want ErrInvalidName", err)
	}
}

func TestRemotePath(t *testing.T) {
	for _, c := range []struct{ root, rel, want string }{
		{"/srv", "", "/srv"}, {"/srv", "a/b", "/srv/a/b"}, {"/", "", "/"}, {"/", "a", "/a"}, {"/srv", "...", "/srv/..."},
	} {
		if got := (Endpoint{Root: c.root}).remotePath(c.rel); got != c.want {
			t.Errorf("remotePath(%q) under %q = %q, want %q", c.rel, c.root, got, c.want)
		}
	}
}
