package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// scrape fetches the metrics page at addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != metrics.ContentType {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return string(body)
}

// loggedAddr returns the address startMetrics logged at info.
func loggedAddr(t *testing.T, hook *logtest.Hook) string {
	t.Helper()
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.InfoLevel && strings.HasPrefix(e.Message, "metrics at http://") {
			return e.Data["addr"].(string)
		}
	}
	t.Fatalf("no \"metrics at\" line logged; entries: %v", hook.AllEntries())
	return ""
}

func TestStartMetricsServesWrappedTargetAndStops(t *testing.T) {
	lt, err := local.New(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	tg, reg := withMetrics("127.0.0.1:0", lt)
	if reg == nil {
		t.Fatal("withMetrics made no registry for a given address")
	}
	ctx := context.Background()
	if _, err := tg.Write(ctx, "f", strings.NewReader("12345"), target.WriteOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Stat(ctx, "nope"); err == nil {
		t.Fatal("stat of a missing file succeeded")
	}

	log, hook := logtest.NewNullLogger()
	stop, err := startMetrics("127.0.0.1:0", reg, log)
	if err != nil {
		t.Fatal(err)
	}
	addr := loggedAddr(t, hook)
	body := scrape(t, addr)
	for _, want := range []string{
		`ftpsync_target_operations_total{op="write"} 1`,
		`ftpsync_target_errors_total{op="stat",kind="not_found"} 1`,
		`ftpsync_bytes_uploaded_total 5`,
		`ftpsync_upload_duration_seconds_count 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			t.Errorf("warning for a loopback address: %s", e.Message)
		}
	}
	stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after stop", addr)
	}
}

func TestStartMetricsWithoutAddressServesNothing(t *testing.T) {
	lt, err := local.New(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	tg, reg := withMetrics("", lt)
	if tg != lt || reg != nil {
		t.Fatal("without --metrics-addr the target must stay unwrapped")
	}
	log, hook := logtest.NewNullLogger()
	stop, err := startMetrics("", nil, log)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if len(hook.AllEntries()) != 0 {
		t.Fatalf("logged %v", hook.AllEntries())
	}
}

func TestStartMetricsBusyPortNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	log, _ := logtest.NewNullLogger()
	_, err = startMetrics(ln.Addr().String(), metrics.NewRegistry(), log)
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr "+ln.Addr().String()) {
		t.Fatalf("error %v does not name the flag and address", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for _, c := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true}, {"127.9.9.9", true}, {"::1", true},
		{"0.0.0.0", false}, {"::", false}, {"192.168.1.10", false},
	} {
		if got := isLoopback(&net.TCPAddr{IP: net.ParseIP(c.ip)}); got != c.want {
			t.Errorf("isLoopback(%s) = %v, want %v", c.ip, got, c.want)
		}
	}
}

func TestMountGaugesReadTheJournal(t *testing.T) {
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Log: logrus.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := metrics.NewRegistry()
	mountGauges(reg, c)
	if _, err := c.Mkdir(cache.RootIno, "d", 0o755, time.Now()); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := reg.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "ftpsync_writeback_queue_length " + strconv.FormatInt(c.JournalLen(), 10) + "\n"
	if c.JournalLen() == 0 || !strings.Contains(b.String(), want) {
		t.Fatalf("journal length %d; scrape:\n%s", c.JournalLen(), b.String())
	}
}

// TestUploadServesMetricsWhileRunning runs the one-shot upload with
// --metrics-addr 127.0.0.1:0 and checks the server came up at the logged
// address and is gone when the command returns.
func TestUploadServesMetricsWhileRunning(t *testing.T) {
	base := t.TempDir()
	l, r, st := filepath.Join(base, "l"), filepath.Join(base, "r"), filepath.Join(base, "state")
	writeFileAt(t, filepath.Join(l, "a.txt"), "hello", mt0)
	if err := os.MkdirAll(r, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(base, "log")
	code, out := runCLI(t, t.Context(), "--log-level", "info", "--log-file", logFile,
		"upload", l, r, "--state-dir", st, "--metrics-addr", "127.0.0.1:0")
	if code != exitOK {
		t.Fatalf("upload exited %d:\n%s", code, out)
	}
	if got := mustRead(t, filepath.Join(r, "a.txt")); got != "hello" {
		t.Fatalf("remote a.txt = %q", got)
	}
	m := regexp.MustCompile(`metrics at http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(mustRead(t, logFile))
	if m == nil {
		t.Fatalf("log names no metrics address:\n%s", mustRead(t, logFile))
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Fatalf("metrics server at %s outlived the upload", m[1])
	}
}
