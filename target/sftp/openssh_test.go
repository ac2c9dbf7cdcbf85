package sftp

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// hostKeyOf reads the first key of a known_hosts file.
func hostKeyOf(t *testing.T, file string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, _, key, _, _, err := ssh.ParseKnownHosts(data)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return key
}

// TestOpenSSHLogins logs in to the script's sshd with its key and with the
// password, and checks the refusals: a wrong password names user@host, an
// unknown host shows the fingerprint of the key in the script's
// known_hosts.
func TestOpenSSHLogins(t *testing.T) {
	isolate(t)
	s := sshdEnv(t)
	t.Run("key", func(t *testing.T) {
		mustLogin(t, Options{URL: s.url, IdentityFile: s.key, KnownHostsFile: s.knownHosts})
	})
	t.Run("password", func(t *testing.T) {
		mustLogin(t, Options{URL: s.url, Password: s.password, KnownHostsFile: s.knownHosts})
	})
	t.Run("password from the environment", func(t *testing.T) {
		t.Setenv("FTPSYNC_PASSWORD", s.password)
		mustLogin(t, Options{URL: s.url, KnownHostsFile: s.knownHosts})
	})
	t.Run("wrong password", func(t *testing.T) {
		ep, err := ParseURL(s.url)
		if err != nil {
			t.Fatal(err)
		}
		err = loginError(t, Options{URL: s.url, Password: "not-the-Passw0rd", KnownHostsFile: s.knownHosts})
		who := ep.User + "@" + ep.Host
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), who) || strings.Contains(err.Error(), "Passw0rd") {
			t.Errorf("error %q: want ErrAuth naming %s and not the password", err, who)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		fp := ssh.FingerprintSHA256(hostKeyOf(t, s.knownHosts))
		err := loginError(t, Options{URL: s.url, IdentityFile: s.key})
		if !errors.Is(err, target.ErrAuth) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "ssh-keyscan") {
			t.Errorf("error %q: want ErrAuth with the host key's fingerprint %s and how to accept it", err, fp)
		}
	})
	t.Run("accepted by ssh-keyscan's line", func(t *testing.T) {
		// What the message tells the user to do: a known_hosts line for
		// the host (here copied from the script's file) is accepted.
		f, err := os.Open(s.knownHosts)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		if !sc.Scan() {
			t.Fatalf("%s is empty", s.knownHosts)
		}
		home := os.Getenv("HOME")
		if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(sc.Text()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustLogin(t, Options{URL: s.url, IdentityFile: s.key})
	})
}
