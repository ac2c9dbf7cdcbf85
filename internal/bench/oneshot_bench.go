package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// binary builds the command once per run, so the bench measures what users
// run.
func (e *env) binary(ctx context.Context) (string, error) {
	bin := filepath.Join(e.work, "ftpsync-mount")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ftpsync-mount")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return bin, nil
}

// ours runs the binary with the password in its environment.
func (e *env) ours(ctx context.Context, args ...string) error {
	bin, err := e.binary(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+e.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ftpsync-mount %v: %w\n%s", args, err, tail(out, 2000))
	}
	return nil
}

// benchOneshotUpload uploads the Go source tree with our upload command and
// with lftp's mirror, then times a sync that has nothing to do against a
// listing of the same remote tree with our pool.
func benchOneshotUpload(ctx context.Context, e *env) ([]result, error) {
	src := filepath.Join(e.work, "gosrc-local")
	if _, err := os.Stat(src); err != nil {
		if err := copyTree(e.goSrc, src); err != nil {
			return nil, err
		}
	}
	state := filepath.Join(e.work, "state")
	script, err := e.lftpScript("mirror-src", fmt.Sprintf("mirror -R --parallel=8 %s up-src-lftp", src))
	if err != nil {
		return nil, err
	}
	dOurs, dLftp, err := alternate(2,
		func() error {
			for _, d := range []string{filepath.Join(e.root, "up-src-ours"), filepath.Join(e.root, "up-src-lftp"), state} {
				os.RemoveAll(d)
			}
			if err := os.MkdirAll(filepath.Join(e.root, "up-src-ours"), 0o755); err != nil {
				return err
			}
			chownLikeRoot(e.root, filepath.Join(e.root, "up-src-ours"))
			return nil
		},
		func() error {
			return e.ours(ctx, "upload", "-q", "--parallel", "8", "--connections", "8", "--state-dir", state,
				src, e.url+"up-src-ours")
		},
		func() error { return run(ctx, "lftp", "-f", script) })
	if err != nil {
		return nil, err
	}
	results := []result{{issue: 6, name: "first upload of Go src (11.5k files)", unit: "s",
		ours: dOurs.Seconds(), ref: dLftp.Seconds(), refName: "lftp mirror -R --parallel=8", limit: 1.3}}

	// A sync right after the upload has nothing to do.
	dNoop, err := best(3, func() error {
		return e.ours(ctx, "sync", "-q", "--parallel", "8", "--connections", "8", "--state-dir", state,
			src, e.url+"up-src-ours")
	})
	if err != nil {
		return nil, err
	}
	tg, err := e.openFTP(ctx, 8)
	if err != nil {
		return nil, err
	}
	defer tg.Close()
	dList, err := best(3, func() error {
		_, err := walkParallel(ctx, tg, "up-src-ours", 8)
		return err
	})
	if err != nil {
		return nil, err
	}
	results = append(results, result{issue: 6, name: "sync with nothing to do (Go src)", unit: "s",
		ours: dNoop.Seconds(), ref: dList.Seconds(), refName: "listing the tree, our pool", limit: 1.5})
	return results, nil
}

// chownLikeRoot gives a folder made directly on the server's disk the owner
// of the server's root, so that the FTP user may write into it.
func chownLikeRoot(root, dir string) {
	if fi, err := os.Stat(root); err == nil {
		if st, ok := statOwner(fi); ok {
			os.Chown(dir, st[0], st[1])
		}
	}
}
