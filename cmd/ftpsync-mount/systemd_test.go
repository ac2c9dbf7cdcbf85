package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

// The example unit contrib/systemd/ftpsync-mount@.service cannot be run by
// systemd here (PID 1 is not systemd), so the tests do what systemd would:
// TestSystemdUnitVerify has systemd-analyze check the unit and show how it
// expands it, and TestSystemdUnitStartStop runs the unit's ExecStart and
// ExecStop lines with its specifiers and environment expanded, as systemd
// does for Type=notify, against the embedded server.

const unitPath = "../../contrib/systemd/ftpsync-mount@.service"

// unitSandbox is the unit with its system paths moved into the test's
// folders, as `make install` moves /usr/bin to BINDIR: nothing of the
// machine's /etc or /var is read or written.
type unitSandbox struct {
	text      string // the unit, paths moved
	etc       string // stands for /etc/ftpsync-mount
	cacheHome string // stands for /var/cache
	stateHome string // stands for /var/lib
	bin       string // stands for /usr/bin/ftpsync-mount
	tmp       string // the root of all of the above
}

func newUnitSandbox(t *testing.T, bin string) *unitSandbox {
	t.Helper()
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	s := &unitSandbox{etc: filepath.Join(tmp, "etc"), cacheHome: filepath.Join(tmp, "cache"), stateHome: filepath.Join(tmp, "lib"), bin: bin, tmp: tmp}
	moves := []string{"/usr/bin/ftpsync-mount", bin, "/etc/ftpsync-mount", s.etc, "=/var/cache", "=" + s.cacheHome, "=/var/lib", "=" + s.stateHome}
	for i := 0; i < len(moves); i += 2 {
		if !strings.Contains(string(raw), moves[i]) {
			t.Fatalf("the unit no longer refers to %s: update the moves of this test", moves[i])
		}
	}
	s.text = strings.NewReplacer(moves...).Replace(string(raw))
	if err := os.MkdirAll(s.etc, 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

// unitKeys reads the [Service] section: each key's values in order, with
// comments and blank lines left out.
func unitKeys(t *testing.T, text string) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	section := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasSuffix(line, `\`) {
				t.Fatalf("unit line %q: this test reads key=value lines only", line)
			}
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// escapePath is `systemd-escape --path`: the instance name that stands for
// a mount point.
func escapePath(p string) string {
	p = strings.Trim(filepath.Clean(p), "/")
	if p == "" {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// unescapeInstance undoes escapePath's \xNN escapes; paths also turn '-'
// back into '/'.
func unescapeInstance(s string, path bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x':
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
			b.WriteByte(s[i])
		case s[i] == '-' && path:
			b.WriteByte('/')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// expandSpecifiers resolves the % specifiers of one word for the instance;
// the test fails on one it does not know, rather than run a wrong command.
func expandSpecifiers(t *testing.T, word, instance string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(word); i++ {
		if word[i] != '%' {
			b.WriteByte(word[i])
			continue
		}
		if i+1 == len(word) {
			t.Fatalf("unit word %q ends in %%", word)
		}
		i++
		switch word[i] {
		case 'i':
			b.WriteString(instance)
		case 'I':
			b.WriteString(unescapeInstance(instance, false))
		case 'f':
			b.WriteString("/" + unescapeInstance(instance, true))
		case 'n':
			b.WriteString("ftpsync-mount@" + instance + ".service")
		case '%':
			b.WriteByte('%')
		default:
			t.Fatalf("unit word %q uses %%%c, which this test does not expand", word, word[i])
		}
	}
	return b.String()
}

// splitWords splits a command line or an Environment= value into words as
// systemd does: at blanks, with "..." and '...' quoting, and backslash
// escapes (\$ for a literal $) in and out of quotes.
func splitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// execLine is one Exec line with its specifiers resolved; the environment
// is substituted when it runs.
type execLine struct {
	words        []string
	ignoreFailed bool // the "-" prefix
}

func parseExec(t *testing.T, value, instance string) execLine {
	t.Helper()
	var e execLine
	if strings.HasPrefix(value, "-") {
		e.ignoreFailed, value = true, value[1:]
	}
	if value == "" || strings.ContainsAny(value[:1], "@:+!") {
		t.Fatalf("Exec line %q: this test does not run prefix %c", value, value[0])
	}
	for _, w := range splitWords(t, value) {
		e.words = append(e.words, expandSpecifiers(t, w, instance))
	}
	return e
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// argv substitutes the environment: a word that is $NAME becomes the
// value's blank-separated parts; ${NAME} anywhere stands for the whole
// value (systemd.service(5), "Command lines").
func (e execLine) argv(env map[string]string) []string {
	var out []string
	for _, w := range e.words {
		if name, ok := strings.CutPrefix(w, "$"); ok && !strings.HasPrefix(name, "{") {
			out = append(out, strings.Fields(env[name])...)
			continue
		}
		out = append(out, envRef.ReplaceAllStringFunc(w, func(m string) string { return env[m[2:len(m)-1]] }))
	}
	return out
}

// unitCommands reads the unit's Exec lines for the instance, and checks
// that every path they use is inside the sandbox or one of the few system
// programs they may run.
func (s *unitSandbox) unitCommands(t *testing.T, instance string) (start execLine, stop []execLine) {
	t.Helper()
	keys := unitKeys(t, s.text)
	if got := keys["Type"]; len(got) != 1 || got[0] != "notify" {
		t.Fatalf("Type=%q: the unit is meant to be Type=notify", got)
	}
	if len(keys["ExecStart"]) != 1 || len(keys["ExecStop"]) == 0 {
		t.Fatalf("ExecStart=%q ExecStop=%q: want one start line and at least one stop line", keys["ExecStart"], keys["ExecStop"])
	}
	start = parseExec(t, keys["ExecStart"][0], instance)
	for _, v := range keys["ExecStop"] {
		stop = append(stop, parseExec(t, v, instance))
	}
	for _, e := range append([]execLine{start}, stop...) {
		for _, w := range e.words {
			if strings.HasPrefix(w, "/") {
				s.checkPath(t, w)
			}
		}
	}
	return start, stop
}

// unitEnv is the environment the unit gives its commands: Environment=
// lines, then the EnvironmentFile= files.
func (s *unitSandbox) unitEnv(t *testing.T, instance string) map[string]string {
	t.Helper()
	keys := unitKeys(t, s.text)
	env := map[string]string{}
	for _, v := range keys["Environment"] {
		for _, kv := range splitWords(t, expandSpecifiers(t, v, instance)) {
			k, val, _ := strings.Cut(kv, "=")
			env[k] = val
		}
	}
	for _, v := range keys["EnvironmentFile"] {
		optional := strings.HasPrefix(v, "-")
		p := expandSpecifiers(t, strings.TrimPrefix(v, "-"), instance)
		s.checkPath(t, p)
		data, err := os.ReadFile(p)
		if err != nil {
			if optional {
				continue
			}
			t.Fatalf("EnvironmentFile: %v", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k, val, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k != "" && k[0] != '#' {
				env[k] = strings.Trim(val, `"'`)
			}
		}
	}
	for _, v := range env {
		if strings.HasPrefix(v, "/") {
			s.checkPath(t, v)
		}
	}
	return env
}

// unitSystemPaths are the paths outside the sandbox the unit may use.
var unitSystemPaths = map[string]bool{"/usr/bin/tail": true, "/dev/null": true}

func (s *unitSandbox) checkPath(t *testing.T, p string) {
	t.Helper()
	if !strings.HasPrefix(p, s.tmp+"/") && !unitSystemPaths[p] && p != s.bin {
		t.Fatalf("the unit uses %s, outside the test's folders: move it in newUnitSandbox", p)
	}
}

// writeUnitFiles writes the configuration the unit's comments tell the
// user to write: the .env file with REMOTE and the password, and a config
// file naming the remote.
func (s *unitSandbox) writeUnitFiles(t *testing.T, instance, url, password string) {
	t.Helper()
	writeConfig(t, filepath.Join(s.etc, instance+".env"), "REMOTE=site\nFTPSYNC_PASSWORD="+password+"\n")
	writeConfig(t, filepath.Join(s.etc, "config.yaml"), "remotes:\n  site:\n    url: "+url+"\n    connections: 2\n")
}

// TestSystemdUnitVerify runs systemd-analyze verify on the unit (for an
// instance whose path needs escaping), which needs no running systemd, and
// compares the command lines systemd builds from it with this file's
// expansion, so that TestSystemdUnitStartStop runs what systemd would.
func TestSystemdUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze (Debian package systemd) is missing; .ci/run installs it")
		}
		t.Skip("systemd-analyze (Debian package systemd) is not installed")
	}
	s := newUnitSandbox(t, "/bin/true") // verify checks that the programs exist
	mp := filepath.Join(s.tmp, "srv site-1")
	instance := escapePath(mp)
	if out, err := exec.Command("systemd-escape", "--path", mp).Output(); err != nil || strings.TrimSpace(string(out)) != instance {
		t.Fatalf("systemd-escape --path %q = %q, %v; this test escapes it as %q", mp, out, err, instance)
	}
	if got := unescapeInstance(instance, true); "/"+got != mp {
		t.Fatalf("%%f of %q = /%s, want %s", instance, got, mp)
	}
	unit := filepath.Join(s.tmp, "ftpsync-mount@"+instance+".service")
	if err := os.WriteFile(unit, []byte(s.text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", unit)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=debug") // debug level also prints the unit as loaded
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, lastLines(stderr.String(), 30))
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "ftpsync-mount@") && regexp.MustCompile(`(?i)warn|fail|unknown|ignor|invalid`).MatchString(l) {
			t.Errorf("systemd-analyze: %s", l)
		}
	}

	// The unit as systemd loaded it: its command lines, specifiers resolved.
	var loaded [][]string
	sc := bufio.NewScanner(strings.NewReader(stdout.String() + stderr.String()))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Command Line: "); ok {
			loaded = append(loaded, splitWords(t, line))
		}
	}
	if len(loaded) == 0 {
		t.Fatalf("systemd-analyze printed no command lines at debug level:\n%s", lastLines(stderr.String(), 30))
	}
	start, stop := s.unitCommands(t, instance)
	var ours [][]string
	for _, e := range append([]execLine{start}, stop...) {
		ours = append(ours, e.words)
	}
	if fmt.Sprint(loaded) != fmt.Sprint(ours) {
		t.Errorf("systemd's command lines:\n%q\nthis test's:\n%q", loaded, ours)
	}
}

// notifySocket is the datagram socket systemd gives a Type=notify service
// in NOTIFY_SOCKET; it receives the sender's credentials with each
// datagram, as systemd uses them for NotifyAccess=main.
type notifySocket struct {
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v, %v", err, serr)
	}
	return &notifySocket{conn: conn, path: p}
}

// receive returns the next datagram and the PID that sent it.
func (n *notifySocket) receive(deadline time.Time) (string, int, error) {
	n.conn.SetReadDeadline(deadline)
	buf, oob := make([]byte, 4096), make([]byte, 1024)
	nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", 0, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:noob])
	if err != nil {
		return "", 0, err
	}
	for _, m := range msgs {
		if cred, err := syscall.ParseUnixCredentials(&m); err == nil {
			return string(buf[:nb]), int(cred.Pid), nil
		}
	}
	return string(buf[:nb]), 0, fmt.Errorf("no sender credentials with %q", buf[:nb])
}

// TestSystemdUnitStartStop runs the unit as systemd would for
// ftpsync-mount@<mount point>.service: ExecStart with the unit's
// environment and a NOTIFY_SOCKET, started once READY=1 comes from the
// main process (Type=notify, NotifyAccess=main); then a write through the
// mount while the server cannot be reached (its relay is closed), so that
// the upload cannot happen before the stop; the server comes back and the
// ExecStop lines run in order with MAINPID set. The main process must have
// exited 0 when the last stop line returns (systemd would SIGTERM it
// otherwise), the file must be on the server and the mount point free.
func TestSystemdUnitStartStop(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "on-server.txt"), []byte("served"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newUnitSandbox(t, bin)
	mp := filepath.Join(s.tmp, "srv site")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	instance := escapePath(mp)
	relay := startRelay(t, srv.Addr())
	s.writeUnitFiles(t, instance, "ftp://"+srv.User+"@"+relay.addr()+"/", srv.Password)
	start, stop := s.unitCommands(t, instance)
	env := s.unitEnv(t, instance)
	notify := listenNotify(t)

	// systemd starts services with its own short environment: no HOME for a
	// root service without User=.
	environ := func(extra map[string]string) []string {
		out := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + notify.path}
		for k, v := range env {
			out = append(out, k+"="+v)
		}
		for k, v := range extra {
			out = append(out, k+"="+v)
		}
		return out
	}
	argv := start.argv(env)
	main := exec.Command(argv[0], argv[1:]...)
	main.Env = environ(nil)
	var mainOut bytes.Buffer
	main.Stdout, main.Stderr = &mainOut, &mainOut
	if err := main.Start(); err != nil {
		t.Fatalf("ExecStart %q: %v", argv, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- main.Wait() }() // reaped at once, as systemd does
	t.Cleanup(func() {
		main.Process.Kill()
		exec.Command("umount", "-l", mp).Run()
	})

	// systemd's default TimeoutStartSec, which the unit keeps.
	msg, pid, err := notify.receive(time.Now().Add(90 * time.Second))
	if err != nil {
		select {
		case werr := <-exited:
			t.Fatalf("ExecStart %q ended (%v) without READY=1:\n%s", argv, werr, mainOut.String())
		default:
			t.Fatalf("no READY=1 within 90s: %v\n%s", err, mainOut.String())
		}
	}
	if msg != "READY=1" || pid != main.Process.Pid {
		t.Fatalf("notification %q from pid %d; want READY=1 from the main process %d (NotifyAccess=main drops others)", msg, pid, main.Process.Pid)
	}
	// Ready means usable: no waiting from here on.
	if got, err := os.ReadFile(filepath.Join(mp, "on-server.txt")); err != nil || string(got) != "served" {
		t.Fatalf("read right after READY=1: %q, %v", got, err)
	}
	relay.close()
	if err := os.WriteFile(filepath.Join(mp, "written.txt"), []byte("flushed at stop"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, "written.txt")); err == nil {
		t.Fatal("the write reached the server with the relay closed")
	}
	startRelayAt(t, relay.addr(), srv.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stopEnv := map[string]string{"MAINPID": strconv.Itoa(main.Process.Pid)}
	for k, v := range env {
		stopEnv[k] = v
	}
	for _, e := range stop {
		argv := e.argv(stopEnv)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = environ(map[string]string{"MAINPID": stopEnv["MAINPID"]})
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("ExecStop %q still running after 90s\n%s", argv, mainOut.String())
		}
		if err != nil && !e.ignoreFailed {
			t.Fatalf("ExecStop %q: %v\n%s", argv, err, out)
		}
		t.Logf("ExecStop %q: %v\n%s", argv, err, out)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the main process exited with %v (systemd would restart it: Restart=on-failure)\n%s", err, mainOut.String())
		}
	default:
		t.Fatalf("the main process still runs after the last ExecStop; systemd would SIGTERM it\n%s", mainOut.String())
	}
	if got, err := os.ReadFile(filepath.Join(srv.Root, "written.txt")); err != nil || string(got) != "flushed at stop" {
		t.Fatalf("after the stop the server holds %q, %v\n%s", got, err, mainOut.String())
	}
	if ok, _ := isOurMount(mp); ok {
		t.Fatal("still mounted after the stop")
	}
	// The cache went where the unit's environment said, not to a HOME.
	if _, err := os.Stat(filepath.Join(s.cacheHome, "ftpsync-mount")); err != nil {
		t.Errorf("the cache is not under the unit's XDG_CACHE_HOME: %v", err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
