package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
)

// demoFiles is the sample tree the demo serves; names with spaces, unicode
// and leading dots on purpose.
var demoFiles = map[string]string{
	"index.html":                   "<!doctype html>\n<title>ftpsync-mount demo</title>\n<h1>Hello from the FTP server</h1>\n",
	"css/site.css":                 "body { font-family: sans-serif; }\n",
	"notes/todo.txt":               "- edit files with any tool\n- unmount to flush\n",
	"notes/meeting notes 2026.txt": "Everything in this folder lives on an FTP server.\n",
	"unicode/grüße.md":             "# Grüße\n\nNames in UTF-8 work.\n",
	".hidden-config":               "dotfiles show up too\n",
}

func newDemoCmd(g *globalOptions) *cobra.Command {
	var dir, mnt, addr string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Serve a folder of sample files over FTP on 127.0.0.1 and mount it",
		Long: `demo starts the embedded FTP server over a folder of sample files (created
on first use), mounts it at ./mnt and waits. Try ls, cat, find and cp in the
mount; Ctrl-C unmounts and stops the server.`,
		Example: `  make demo                                  # builds, then runs the line below
  ftpsync-mount demo
  ftpsync-mount demo --dir ~/sample --mountpoint /tmp/sample-mnt`,
		Args: exactArgs(0, "ftpsync-mount demo [--dir DIR] [--mountpoint DIR]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), g, dir, mnt, addr)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".demo/site", "the folder to serve (sample files are added when it is empty)")
	cmd.Flags().StringVar(&mnt, "mountpoint", "mnt", "where to mount (created if missing)")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:0", "the server's address (port 0: any free port)")
	return cmd
}

func runDemo(ctx context.Context, g *globalOptions, dir, mnt, addr string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := seedDemo(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", mnt, err)
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	pw := hex.EncodeToString(b[:])
	srv, err := ftpd.Start(ftpd.Options{Root: dir, Addr: addr, User: "demo", Password: pw, Log: g.log})
	if err != nil {
		return err
	}
	defer srv.Close()
	// The mount reads the password the way a user's would: from the
	// environment of this process, never from an argument list.
	os.Setenv("FTPSYNC_PASSWORD", pw)
	remote := "ftp://demo@" + srv.Addr() + "/"
	cacheDir := filepath.Join(filepath.Dir(dir), "cache")
	mf := &mountFlags{cacheDir: cacheDir, cacheMaxSize: "1G", dirCacheTime: 5 * time.Second}
	mf.target = targetFlags{connections: 4, timeout: 10 * time.Second}
	if ctx == nil {
		ctx = context.Background()
	}
	return runMount(ctx, g, mf, remote, mnt, func() {
		abs, _ := filepath.Abs(mnt)
		fmt.Printf(`
ftpsync-mount demo
  FTP server:  %s  (serving %s)
  mounted at:  %s
  cache:       %s

Try, in another terminal:
  ls -la %s
  cat %s/index.html
  find %s -type f
  cp -r %s/notes /tmp/

Files changed on the server side (%s) show up after a refresh.
Press Ctrl-C here to unmount and stop the server.
`, remote, dir, abs, cacheDir, abs, abs, abs, abs, dir)
	})
}

// seedDemo fills an empty or missing folder with the sample files.
func seedDemo(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil
	}
	for name, content := range demoFiles {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create demo files: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("create demo files: %w", err)
		}
	}
	big := filepath.Join(dir, "data", "sample-8MiB.bin")
	if err := os.MkdirAll(filepath.Dir(big), 0o755); err != nil {
		return err
	}
	data := []byte(strings.Repeat("ftpsync-mount demo data\n", (8<<20)/24+1))[:8<<20]
	return os.WriteFile(big, data, 0o644)
}
