package sftp

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// isolate keeps the tests away from the user's ssh setup: no agent, no
// ~/.ssh keys or known_hosts, no ~/.netrc, no password in the environment.
func isolate(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("FTPSYNC_PASSWORD", "")
}

// testServer is an SSH server in the test process that serves SFTP on a
// folder of its own with pkg/sftp's server, on 127.0.0.1.
type testServer struct {
	Addr       string // 127.0.0.1:port
	Root       string // the folder served; paths are absolute on this machine
	User       string
	Password   string
	KnownHosts string // a known_hosts file that holds the host key
	KeyFile    string // a private key (OpenSSH PEM) the server accepts
	HostKey    ssh.PublicKey

	ln    net.Listener
	mu    sync.Mutex // protects conns
	conns []net.Conn
	wg    sync.WaitGroup
}

// startServer starts a server that accepts the password and KeyFile's key;
// it stops when the test ends.
func startServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	s := &testServer{Root: filepath.Join(dir, "root"), User: "alice", Password: "s3cret pass"}
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	s.HostKey = hostSigner.PublicKey()
	userPub, userPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(userPriv, "test key")
	if err != nil {
		t.Fatal(err)
	}
	s.KeyFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(s.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	authorized, err := ssh.NewPublicKey(userPub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == s.User && string(pw) == s.Password {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() == s.User && string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)
	// A second host key that known_hosts does not hold: the client must
	// ask for the ed25519 one, which the library would not pick first.
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSigner, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AddHostKey(ecSigner)
	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = s.ln.Addr().String()
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey) + "\n"
	if err := os.WriteFile(s.KnownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	s.wg.Go(func() { s.accept(cfg) })
	t.Cleanup(s.stop)
	return s
}

// URL is the sftp:// URL of folder sub of the root ("" for the root).
func (s *testServer) URL(sub string) string {
	return "sftp://" + s.User + "@" + s.Addr + filepath.ToSlash(filepath.Join(s.Root, sub))
}

func (s *testServer) accept(cfg *ssh.ServerConfig) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(c, cfg) })
	}
}

// serve runs one SSH connection: sessions may only start the sftp
// subsystem; global requests (keepalives) get a refusal, which is a reply.
func (s *testServer) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Go(func() { s.session(ch, creqs) })
	}
}

func (s *testServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		ok := req.Type == "subsystem" && len(req.Payload) > 4 && string(req.Payload[4:]) == "sftp"
		_ = req.Reply(ok, nil)
		if !ok {
			continue
		}
		go ssh.DiscardRequests(reqs)
		srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.Root))
		if err != nil {
			return
		}
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			_ = srv.Close()
		}
		return
	}
}

// stop closes the listener and every connection and waits for them.
func (s *testServer) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
