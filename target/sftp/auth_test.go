package sftp

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// mustLogin opens a target with opts and checks that it lists the root.
func mustLogin(t *testing.T, opts Options) {
	t.Helper()
	opts.Log, opts.Timeout = testutil.Log(t), 10*time.Second
	tg, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer tg.Close()
	if _, err := tg.List(t.Context(), ""); err != nil {
		t.Fatalf("list after login: %v", err)
	}
}

// loginError opens a target that must fail and returns the error.
func loginError(t *testing.T, opts Options) error {
	t.Helper()
	opts.Log, opts.Timeout = testutil.Log(t), 10*time.Second
	tg, err := New(t.Context(), opts)
	if err == nil {
		tg.Close()
		t.Fatalf("login to %s succeeded; want a refusal", opts.URL)
	}
	return err
}

func TestLoginWithKey(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	t.Run("identity", func(t *testing.T) {
		mustLogin(t, Options{URL: srv.URL(""), IdentityFile: srv.KeyFile, KnownHostsFile: srv.KnownHosts})
	})
	t.Run("default key file", func(t *testing.T) {
		home := os.Getenv("HOME")
		key, err := os.ReadFile(srv.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(home, ".ssh", "id_ed25519"))
		// And the default known_hosts file.
		kh, err := os.ReadFile(srv.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), kh, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(filepath.Join(home, ".ssh", "known_hosts"))
		mustLogin(t, Options{URL: srv.URL("")})
	})
	t.Run("agent", func(t *testing.T) {
		key, err := os.ReadFile(srv.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ssh.ParseRawPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyring := agent.NewKeyring()
		if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(t.TempDir(), "agent.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = agent.ServeAgent(keyring, c)
				}()
			}
		}()
		t.Setenv("SSH_AUTH_SOCK", sock)
		mustLogin(t, Options{URL: srv.URL(""), KnownHostsFile: srv.KnownHosts})
	})
}

func TestLoginWithPassword(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	t.Run("option", func(t *testing.T) {
		mustLogin(t, Options{URL: srv.URL(""), Password: srv.Password, KnownHostsFile: srv.KnownHosts})
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv("FTPSYNC_PASSWORD", srv.Password)
		mustLogin(t, Options{URL: srv.URL(""), KnownHostsFile: srv.KnownHosts})
	})
	t.Run("password file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte(srv.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustLogin(t, Options{URL: srv.URL(""), PasswordFile: f, KnownHostsFile: srv.KnownHosts})
	})
	t.Run("netrc", func(t *testing.T) {
		netrc := filepath.Join(os.Getenv("HOME"), ".netrc")
		body := "machine 127.0.0.1 login " + srv.User + " password \"" + srv.Password + "\"\n"
		if err := os.WriteFile(netrc, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(netrc)
		mustLogin(t, Options{URL: srv.URL(""), KnownHostsFile: srv.KnownHosts})
	})
}

func TestLoginRefused(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	who := srv.User + "@" + srv.Addr
	t.Run("wrong password", func(t *testing.T) {
		err := loginError(t, Options{URL: srv.URL(""), Password: "Wr0ngPassw0rd", KnownHostsFile: srv.KnownHosts})
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), who) {
			t.Errorf("error %q: want ErrAuth naming %s", err, who)
		}
		if strings.Contains(err.Error(), "Wr0ngPassw0rd") {
			t.Errorf("error %q shows the password", err)
		}
	})
	t.Run("no key and no password", func(t *testing.T) {
		err := loginError(t, Options{URL: srv.URL(""), KnownHostsFile: srv.KnownHosts})
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), "FTPSYNC_PASSWORD") {
			t.Errorf("error %q: want ErrAuth saying where a password would come from", err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "other_key")
		if err := os.WriteFile(f, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		err = loginError(t, Options{URL: srv.URL(""), IdentityFile: f, KnownHostsFile: srv.KnownHosts})
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), who) {
			t.Errorf("error %q: want ErrAuth naming %s", err, who)
		}
	})
	t.Run("unusable identity", func(t *testing.T) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("passphrase"))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		locked := filepath.Join(dir, "locked_key")
		if err := os.WriteFile(locked, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		err = loginError(t, Options{URL: srv.URL(""), IdentityFile: locked, KnownHostsFile: srv.KnownHosts})
		if !strings.Contains(err.Error(), "ssh-add") {
			t.Errorf("a key with a passphrase: %q, want advice to use ssh-agent", err)
		}
		err = loginError(t, Options{URL: srv.URL(""), IdentityFile: filepath.Join(dir, "missing"), KnownHostsFile: srv.KnownHosts})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a missing key file: %v, want ErrNotExist", err)
		}
	})
}

func TestHostKeyRefused(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	fp := ssh.FingerprintSHA256(srv.HostKey)
	t.Run("unknown host", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := loginError(t, Options{URL: srv.URL(""), Password: srv.Password, KnownHostsFile: empty})
		msg := err.Error()
		// The ed25519 key is the one the client asks for first among
		// those it prefers; either fingerprint is the server's.
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(msg, "unknown host") || !strings.Contains(msg, "SHA256:") ||
			!strings.Contains(msg, "ssh-keyscan -p") || !strings.Contains(msg, empty) {
			t.Errorf("error %q: want an unknown-host refusal with the fingerprint, the file and ssh-keyscan", msg)
		}
	})
	t.Run("no known_hosts at all", func(t *testing.T) {
		err := loginError(t, Options{URL: srv.URL(""), Password: srv.Password})
		if !strings.Contains(err.Error(), filepath.Join(os.Getenv("HOME"), ".ssh", "known_hosts")) {
			t.Errorf("error %q does not name ~/.ssh/known_hosts", err)
		}
	})
	t.Run("changed key", func(t *testing.T) {
		other, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		otherKey, err := ssh.NewPublicKey(other)
		if err != nil {
			t.Fatal(err)
		}
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, otherKey) + "\n"
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		err = loginError(t, Options{URL: srv.URL(""), Password: srv.Password, KnownHostsFile: kh})
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), "MISMATCH") ||
			!strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), kh+":1") {
			t.Errorf("error %q: want a mismatch naming the server's key %s and the known_hosts line", err, fp)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		err := loginError(t, Options{URL: srv.URL(""), Password: srv.Password, KnownHostsFile: filepath.Join(t.TempDir(), "nope")})
		if !strings.Contains(err.Error(), "--known-hosts") {
			t.Errorf("error %q: want a hint about --known-hosts", err)
		}
	})
}

func TestBadURL(t *testing.T) {
	isolate(t)
	for _, u := range []string{"sftp://alice:Secr3t@host:99999/x", "ftp://alice@host/", "sftp://alice@host/../etc"} {
		_, err := New(t.Context(), Options{URL: u, Log: testutil.Log(t)})
		if err == nil {
			t.Errorf("New(%q) succeeded", u)
		} else if strings.Contains(err.Error(), "Secr3t") {
			t.Errorf("New(%q): error %q shows the password", u, err)
		}
	}
}
