package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// workloads lists every figure, in issue order.
func workloads() []workload {
	return []workload{
		{2, "target-read-1GiB", benchTargetRead},
		{2, "target-list-gosrc", benchTargetList},
		{2, "target-upload-1000", benchTargetUpload},
		{3, "mount-list-gosrc", benchMountList},
		{3, "mount-read-1GiB", benchMountRead},
		{3, "mount-rss-100k", benchMountRSS},
		{4, "writeback-tar-gosrc", benchWriteback},
		{4, "writeback-rclone-gosrc", benchWritebackRclone},
		{4, "append-uploads-1GiB", benchAppendUploads},
		{5, "mount-poll-10k", benchPoll},
		{6, "oneshot-upload-gosrc", benchOneshotUpload},
		{8, "compare-rclone-server-change", benchCompareServerChange},
		{8, "compare-rclone-conflict", benchCompareConflict},
		{8, "compare-rclone-stop-pending", benchCompareStopPending},
		{8, "compare-rclone-refused-upload", benchCompareRefused},
		{8, "compare-rclone-kill9", benchCompareKill9},
	}
}

func (e *env) openFTP(ctx context.Context, conns int) (*ftp.Target, error) {
	return ftp.New(ctx, ftp.Options{URL: e.url, Password: e.password, Connections: conns, Log: e.log})
}

// best runs f n times and returns the shortest time: the least disturbed
// run is the best estimate of what the code costs.
func best(n int, f func() error) (time.Duration, error) {
	var min time.Duration
	for i := 0; i < n; i++ {
		d, err := timed(f)
		if err != nil {
			return 0, err
		}
		if i == 0 || d < min {
			min = d
		}
	}
	return min, nil
}

func mibps(size int64, d time.Duration) float64 {
	return float64(size) / (1 << 20) / d.Seconds()
}

// benchTargetRead streams a large file through target/ftp and through curl.
func benchTargetRead(ctx context.Context, e *env) ([]result, error) {
	dir := filepath.Join(e.root, "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := makeBigFile(filepath.Join(dir, "big.bin"), e.bigSize); err != nil {
		return nil, err
	}
	tg, err := e.openFTP(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer tg.Close()
	netrc, err := e.netrcFile()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	ours := func() error {
		r, err := tg.Open(ctx, "bench/big.bin", 0, -1)
		if err != nil {
			return err
		}
		n, err := io.CopyBuffer(onlyWriter{io.Discard}, onlyReader{r}, buf)
		r.Close()
		if err == nil && n != e.bigSize {
			err = fmt.Errorf("read %d bytes, want %d", n, e.bigSize)
		}
		return err
	}
	curl := func() error {
		return run(ctx, "curl", "-sS", "--netrc-file", netrc, "-o", "/dev/null", "ftp://"+e.hostPort()+"/bench/big.bin")
	}
	dOurs, dCurl, err := alternate(3, nil, ours, curl)
	if err != nil {
		return nil, err
	}
	return []result{{issue: 2, name: fmt.Sprintf("stream read %d MiB (target/ftp)", e.bigSize>>20), unit: "MiB/s",
		ours: mibps(e.bigSize, dOurs), ref: mibps(e.bigSize, dCurl), refName: "curl", limit: 0.9, atLeast: true}}, nil
}

// benchTargetList lists every folder of a Go source tree: ours over the
// pool, lftp's find over one connection.
func benchTargetList(ctx context.Context, e *env) ([]result, error) {
	if err := e.ensureGoSrc(); err != nil {
		return nil, err
	}
	tg, err := e.openFTP(ctx, 4)
	if err != nil {
		return nil, err
	}
	defer tg.Close()
	var dirs int
	dOurs, err := best(3, func() error {
		n, err := walkParallel(ctx, tg, "gosrc", 8)
		dirs = n
		return err
	})
	if err != nil {
		return nil, err
	}
	script, err := e.lftpScript("find", "find gosrc > /dev/null")
	if err != nil {
		return nil, err
	}
	dLftp, err := best(3, func() error { return run(ctx, "lftp", "-f", script) })
	if err != nil {
		return nil, err
	}
	return []result{{issue: 2, name: fmt.Sprintf("list %d folders of Go src (pool of 4)", dirs), unit: "s",
		ours: dOurs.Seconds(), ref: dLftp.Seconds(), refName: "lftp find", limit: 0.5}}, nil
}

// ensureGoSrc copies the Go source tree into the server's folder once.
func (e *env) ensureGoSrc() error {
	dst := filepath.Join(e.root, "gosrc")
	if _, err := os.Stat(filepath.Join(dst, "go.mod")); err == nil {
		return nil
	}
	os.RemoveAll(dst)
	return copyTree(e.goSrc, dst)
}

// walkParallel lists a tree breadth-first with up to workers listings in
// flight and returns how many folders it listed.
func walkParallel(ctx context.Context, tg target.Target, root string, workers int) (int, error) {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		count   int
		firstEr error
	)
	sem := make(chan struct{}, workers)
	var visit func(dir string)
	visit = func(dir string) {
		defer wg.Done()
		sem <- struct{}{}
		entries, err := tg.List(ctx, dir)
		<-sem
		mu.Lock()
		count++
		if err != nil && firstEr == nil {
			firstEr = err
		}
		mu.Unlock()
		for _, en := range entries {
			if en.IsDir {
				wg.Add(1)
				go visit(target.Join(dir, en.Name))
			}
		}
	}
	wg.Add(1)
	visit(root)
	wg.Wait()
	return count, firstEr
}

// benchTargetUpload uploads 1,000 small files with 8 connections, as lftp's
// mirror -R --parallel=8 does.
func benchTargetUpload(ctx context.Context, e *env) ([]result, error) {
	src := filepath.Join(e.work, "small")
	if err := makeSmallFiles(src, 10, 100); err != nil {
		return nil, err
	}
	tg, err := e.openFTP(ctx, 8)
	if err != nil {
		return nil, err
	}
	defer tg.Close()
	script, err := e.lftpScript("mirror", fmt.Sprintf("mirror -R --parallel=8 %s up-lftp", src))
	if err != nil {
		return nil, err
	}
	dOurs, dLftp, err := alternate(2,
		func() error {
			os.RemoveAll(filepath.Join(e.root, "up-ours"))
			return os.RemoveAll(filepath.Join(e.root, "up-lftp"))
		},
		func() error { return uploadTree(ctx, tg, src, "up-ours", 8) },
		func() error { return run(ctx, "lftp", "-f", script) })
	if err != nil {
		return nil, err
	}
	return []result{{issue: 2, name: "upload 1,000 small files (8 connections)", unit: "s",
		ours: dOurs.Seconds(), ref: dLftp.Seconds(), refName: "lftp mirror -R --parallel=8", limit: 1.5}}, nil
}

// makeSmallFiles writes dirs×files files of 1 to 16 KiB.
func makeSmallFiles(root string, dirs, files int) error {
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(root, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for f := 0; f < files; f++ {
			size := 1024 * (1 + (d*files+f)%16)
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + d + f)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.txt", f)), data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// uploadTree copies a local tree to the target: folders first, then files
// with workers uploads in flight, each keeping its mtime.
func uploadTree(ctx context.Context, tg target.Target, src, dst string, workers int) error {
	type job struct {
		local, remote string
		fi            os.FileInfo
	}
	var files []job
	if err := tg.Mkdir(ctx, dst); err != nil {
		return err
	}
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		remote := target.Join(dst, filepath.ToSlash(rel))
		if fi.IsDir() {
			return tg.Mkdir(ctx, remote)
		}
		files = append(files, job{p, remote, fi})
		return nil
	})
	if err != nil {
		return err
	}
	jobs := make(chan job)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				f, err := os.Open(j.local)
				if err == nil {
					_, err = tg.Write(ctx, j.remote, f, target.WriteOptions{ModTime: j.fi.ModTime(), Size: j.fi.Size()})
					f.Close()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, j := range files {
		select {
		case jobs <- j:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			return err
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
