package remote

import (
	"errors"
	"net/url"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

var (
	errMalformed = errors.New("malformed")
	errNoHost    = errors.New("no host")
	errBadHost   = errors.New("bad host")
	errBadPw     = errors.New("bad password")
	errTilde     = errors.New("tilde")
)

var testRules = Rules{Malformed: errMalformed, NoHost: errNoHost, BadHost: errBadHost, BadPassword: errBadPw}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", raw, err)
	}
	return u
}

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		raw, want string
		err       error
	}{
		{"x://Host.Example", "host.example:77", nil},
		{"x://host:0021", "host:21", nil},
		{"x://[::1]", "[::1]:77", nil},
		{"x:///p", "", errNoHost},
		{"x://a::1/", "", errBadHost},
		{"x://host:/", "", ErrBadPort},
		{"x://host:65536/", "", ErrBadPort},
	} {
		got, err := testRules.HostPort(mustParse(t, c.raw), "77")
		if got != c.want || err != c.err {
			t.Errorf("HostPort(%q) = %q, %v; want %q, %v", c.raw, got, err, c.want, c.err)
		}
	}
}

func TestUserInfo(t *testing.T) {
	for _, c := range []struct {
		raw, user, pw string
		err           error
	}{
		{"x://host", "", "", nil},
		{"x://al%40ice:p%3Aw@host", "al@ice", "p:w", nil},
		{"x://:pw@host", "", "pw", nil},
		{"x://a%0Dl:pw@host", "", "", ErrBadUser},
		{"x://al:p%0Aw@host", "", "", errBadPw},
	} {
		user, pw, err := testRules.UserInfo(mustParse(t, c.raw))
		if user != c.user || pw != c.pw || err != c.err {
			t.Errorf("UserInfo(%q) = %q, %q, %v; want %q, %q, %v", c.raw, user, pw, err, c.user, c.pw, c.err)
		}
	}
}

// TestRootTilde: a leading ~ is refused only where the scheme asks, and only
// as the first element below the login folder.
func TestRootTilde(t *testing.T) {
	strict := testRules
	strict.Tilde = errTilde
	for _, c := range []struct {
		raw         string
		loose       string
		strictWant  string
		strictError error
	}{
		{"x://h/~/site", "/~/site", "", errTilde},
		{"x://h/~alice", "/~alice", "", errTilde},
		{"x://h/%2F~alice", "/~alice", "/~alice", nil},
		{"x://h/a/~b", "/a/~b", "/a/~b", nil},
	} {
		u := mustParse(t, c.raw)
		if got, err := testRules.Root(u); got != c.loose || err != nil {
			t.Errorf("Root(%q) without Tilde = %q, %v; want %q", c.raw, got, err, c.loose)
		}
		if got, err := strict.Root(u); got != c.strictWant || err != c.strictError {
			t.Errorf("Root(%q) with Tilde = %q, %v; want %q, %v", c.raw, got, err, c.strictWant, c.strictError)
		}
	}
}

func TestRootErrors(t *testing.T) {
	for _, c := range []struct {
		raw string
		err error
	}{
		{"x://h/a%2Fb", ErrSlashInPath},
		{"x://h/a/../b", target.ErrInvalidName},
		{"x://h/a%40b@c", ErrAtInPath},
	} {
		if got, err := testRules.Root(mustParse(t, c.raw)); !errors.Is(err, c.err) {
			t.Errorf("Root(%q) = %q, %v; want %v", c.raw, got, err, c.err)
		}
	}
}

// TestFormatRoundTrip: what Format writes, HostPort and Root read back.
func TestFormatRoundTrip(t *testing.T) {
	for _, root := range []string{"", "/", "/a b/été", "/mail@home", "/x;y,z", "/~a"} {
		s := Format("x", "al@ice", "[::1]:77", root)
		u := mustParse(t, s)
		got, err := testRules.Root(u)
		if err != nil || got != root {
			t.Errorf("Format root %q = %q, which reads back as %q, %v", root, s, got, err)
		}
		if hp, err := testRules.HostPort(u, "1"); hp != "[::1]:77" || err != nil {
			t.Errorf("Format %q reads back host %q, %v", s, hp, err)
		}
		if u.User.Username() != "al@ice" {
			t.Errorf("Format %q reads back user %q", s, u.User.Username())
		}
	}
}

func TestHostID(t *testing.T) {
	for _, c := range []struct{ hp, def, want string }{
		{"host:21", "21", "host"},
		{"host:2121", "21", "host:2121"},
		{"[::1]:22", "22", "[::1]"},
		{"[::1]:2222", "22", "[::1]:2222"},
		{"noport", "22", "noport"},
	} {
		if got := HostID(c.hp, c.def); got != c.want {
			t.Errorf("HostID(%q, %q) = %q, want %q", c.hp, c.def, got, c.want)
		}
	}
}
