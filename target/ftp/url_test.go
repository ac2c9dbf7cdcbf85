package ftp

import (
	"strings"
	"testing"
)

func TestParseURLValid(t *testing.T) {
	tests := []struct {
		raw  string
		want Endpoint
		str  string
		id   string
	}{
		{
			raw:  "ftp://alice@files.example.com/site",
			want: Endpoint{Scheme: "ftp", TLS: TLSNone, Host: "files.example.com:21", User: "alice", Root: "/site"},
			str:  "ftp://alice@files.example.com:21/site",
			id:   "files.example.com/site",
		},
		{
			raw:  "FTP://Files.Example.COM:2121/a/b/",
			want: Endpoint{Scheme: "ftp", Host: "files.example.com:2121", User: "anonymous", Root: "/a/b"},
			str:  "ftp://anonymous@files.example.com:2121/a/b",
			id:   "files.example.com:2121/a/b",
		},
		{
			raw:  "ftps://bob@host",
			want: Endpoint{Scheme: "ftps", TLS: TLSImplicit, Host: "host:990", User: "bob"},
			str:  "ftps://bob@host:990",
			id:   "host/~bob",
		},
		{
			raw:  "ftps://bob@host:21/x",
			want: Endpoint{Scheme: "ftps", TLS: TLSImplicit, Host: "host:21", User: "bob", Root: "/x"},
			str:  "ftps://bob@host:21/x",
			id:   "host:21/x",
		},
		{
			raw:  "ftpes://bob@host/",
			want: Endpoint{Scheme: "ftpes", TLS: TLSExplicit, Host: "host:21", User: "bob"},
			str:  "ftpes://bob@host:21",
			id:   "host/~bob",
		},
		{
			raw:  "ftp://bob@host/x?tls=explicit",
			want: Endpoint{Scheme: "ftpes", TLS: TLSExplicit, Host: "host:21", User: "bob", Root: "/x"},
			str:  "ftpes://bob@host:21/x",
			id:   "host/x",
		},
		{
			raw:  "ftp://host?tls=implicit",
			want: Endpoint{Scheme: "ftps", TLS: TLSImplicit, Host: "host:990", User: "anonymous"},
			str:  "ftps://anonymous@host:990",
			id:   "host/~anonymous",
		},
		{
			raw:  "ftps://host?tls=implicit",
			want: Endpoint{Scheme: "ftps", TLS: TLSImplicit, Host: "host:990", User: "anonymous"},
			str:  "ftps://anonymous@host:990",
			id:   "host/~anonymous",
		},
		{
			raw:  "ftp://al%40ice:s%3Acret%2F@[::1]:0021/my%20site/%C3%A9t%C3%A9/a%40b",
			want: Endpoint{Scheme: "ftp", Host: "[::1]:21", User: "al@ice", URLPassword: "s:cret/", Root: "/my site/été/a@b"},
			str:  "ftp://al%40ice@[::1]:21/my%20site/%C3%A9t%C3%A9/a%40b",
			id:   "[::1]/my site/été/a@b",
		},
		{
			raw:  "ftp://@host//a//b",
			want: Endpoint{Scheme: "ftp", Host: "host:21", User: "anonymous", Root: "/a/b"},
			str:  "ftp://anonymous@host:21/a/b",
			id:   "host/a/b",
		},
		{
			raw:  "ftp://u@host/%2F",
			want: Endpoint{Scheme: "ftp", Host: "host:21", User: "u", Root: "/"},
			str:  "ftp://u@host:21/%2F",
			id:   "host/",
		},
		{
			raw:  "ftp://u@host/%2fvar/www",
			want: Endpoint{Scheme: "ftp", Host: "host:21", User: "u", Root: "/var/www"},
			str:  "ftp://u@host:21/var/www",
			id:   "host/var/www",
		},
		{
			raw:  "ftp://u:@host/.hidden/x;y,z",
			want: Endpoint{Scheme: "ftp", Host: "host:21", User: "u", Root: "/.hidden/x;y,z"},
			str:  "ftp://u@host:21/.hidden/x%3By%2Cz",
			id:   "host/.hidden/x;y,z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, err := ParseURL(tt.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ParseURL = %+v, want %+v", got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String = %q, want %q", s, tt.str)
			}
			if id := got.ID(); id != tt.id {
				t.Errorf("ID = %q, want %q", id, tt.id)
			}
			back, err := ParseURL(got.String())
			want := got
			want.URLPassword = ""
			if err != nil || back != want {
				t.Errorf("String does not parse back: %+v, %v", back, err)
			}
		})
	}
}

func TestParseURLInvalid(t *testing.T) {
	const secret = "Sup3rS3cret"
	tests := []struct {
		raw  string
		want string // a substring of the error
	}{
		{"", "malformed URL"},
		{"files.example.com/site", "malformed URL"},
		{"alice:" + secret + "@host", "malformed URL"},
		{"ftp:host/x", "malformed URL"},
		{"http://alice:" + secret + "@host/", `unknown scheme "http" (use ftp://, ftps:// or ftpes://)`},
		{"sftp://host/", `unknown scheme "sftp"`},
		{"ftp:///site", "no host"},
		{"ftp://alice:" + secret + "@/site", "no host"},
		{"ftp://host:0/", "port"},
		{"ftp://host:65536/", "port"},
		{"ftp://host:/", "port"},
		{"ftp://alice:" + secret + "@host:99999/", "port"},
		{"ftp://alice:pa#" + secret + "@host/", "malformed URL"},
		{"ftp://alice:12#" + secret + "@host/", "fragment"},
		{"ftp://host/x#frag", "fragment"},
		{"ftp://alice:12?" + secret + "@host/", "unknown URL parameter"},
		{"ftp://alice:12/" + secret + "@host/", "URL path holds '@'"},
		{"ftp://host/?user=x", "unknown URL parameter"},
		{"ftp://host/?tls=maybe", "tls must be"},
		{"ftp://host/?tls=explicit&tls=implicit", "tls must be"},
		{"ftps://host/?tls=explicit", "contradicts"},
		{"ftpes://host/?tls=none", "contradicts"},
		{"ftp://host/a/../b", "invalid name"},
		{"ftp://host/a/%2E%2E/b", "invalid name"},
		{"ftp://host/a/./b", "invalid name"},
		{"ftp://host/a%2Fb", "encoded slash"},
		{"ftp://host/a%00b", "invalid name"},
		{"ftp://host/a%0Db", "invalid name"},
		{"ftp://host/a%0Ab", "invalid name"},
		{"ftp://host/a%zz", "malformed URL"},
		{"ftp://al%0Dice@host/", "user name holds a control character"},
		{"ftp://alice:" + secret + "%0D%0ADELE%20x@host/", "password holds a control character"},
		{"ftp://ho%20st/", "malformed URL"},
		{"ftp://0::10/", "not a host name"},
		{"ftp://[zz:1]/", "malformed URL"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			ep, err := ParseURL(tt.raw)
			if err == nil {
				t.Fatalf("ParseURL = %+v, want an error with %q", ep, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "S3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestEndpointHidesPassword(t *testing.T) {
	ep, err := ParseURL("ftp://alice:hunter2@host/site")
	if err != nil {
		t.Fatal(err)
	}
	if ep.URLPassword != "hunter2" {
		t.Fatalf("URLPassword = %q", ep.URLPassword)
	}
	for _, s := range []string{ep.String(), ep.ID(), ep.TLS.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q shows the password", s)
		}
	}
}

func TestRemotePath(t *testing.T) {
	site := Endpoint{Root: "/site"}
	top := Endpoint{Root: "/"}
	login := Endpoint{}
	tests := []struct {
		ep        Endpoint
		rel, want string
	}{
		{site, "", "/site"},
		{site, "a", "/site/a"},
		{site, "a/b c", "/site/a/b c"},
		{top, "", "/"},
		{top, "a/b", "/a/b"},
		{login, "", "."},
		{login, "a/b", "a/b"},
		{login.WithRoot("/home/alice"), "a", "/home/alice/a"},
		{login.WithRoot("/home/alice/"), "", "/home/alice"},
		{login.WithRoot("home"), "x", "/home/x"},
		{login.WithRoot("/"), "x", "/x"},
		{login.WithRoot(""), "x", "/x"},
	}
	for _, tt := range tests {
		if got := tt.ep.RemotePath(tt.rel); got != tt.want {
			t.Errorf("%+v.RemotePath(%q) = %q, want %q", tt.ep, tt.rel, got, tt.want)
		}
	}
}

func TestTLSModeString(t *testing.T) {
	for m, want := range map[TLSMode]string{TLSNone: "none", TLSExplicit: "explicit", TLSImplicit: "implicit", 7: "TLSMode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("TLSMode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}
