package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

// A mount with --metrics-addr counts what it does: blocks from the server
// and from the cache, remote operations and the write-back queue.
func TestMountServesMetrics(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	os.WriteFile(filepath.Join(srv.Root, "a.txt"), []byte("from the server"), 0o644)
	mnt := t.TempDir()
	mf := &mountFlags{cacheDir: t.TempDir(), cacheMaxSize: "1G", dirCacheTime: time.Minute,
		writeBack: time.Hour, transfers: 2, metricsAddr: "127.0.0.1:0"}
	mf.target.connections, mf.target.timeout = 2, 5*time.Second
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	g := &globalOptions{log: log}

	stop := mountInProcessWith(t, g, mf, srv.URL(), mnt)
	addr := loggedAddr(t, hook)
	for i := 0; i < 2; i++ { // the second read may come from the kernel's page cache
		if b, err := os.ReadFile(filepath.Join(mnt, "a.txt")); err != nil || string(b) != "from the server" {
			t.Fatalf("read: %q, %v", b, err)
		}
	}
	// With a write-back delay of an hour the new file waits in the queue.
	if err := os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("queued"), 0o644); err != nil {
		t.Fatal(err)
	}
	page := scrape(t, addr)
	for name, atLeast := range map[string]float64{
		"ftpsync_cache_misses_total":                 1,
		"ftpsync_writeback_queue_length":             1,
		`ftpsync_target_operations_total{op="list"}`: 1,
		`ftpsync_target_operations_total{op="open"}`: 1,
		"ftpsync_bytes_downloaded_total":             float64(len("from the server")),
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(page)
		if m == nil {
			t.Errorf("no %s in:\n%s", name, page)
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v < atLeast {
			t.Errorf("%s = %v, want at least %v", name, v, atLeast)
		}
	}
	stop() // unmount uploads the queue first
	if b, _ := os.ReadFile(filepath.Join(srv.Root, "new.txt")); string(b) != "queued" {
		t.Fatalf("the queued file on the server: %q", b)
	}
}
