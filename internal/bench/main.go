// Command bench runs the workloads the issues set figures for, each beside a
// reference measured in the same run (curl, lftp, rclone mount, a local
// folder), and prints the ratios. Timing on shared machines is noisy, so
// every figure is a ratio against something measured minutes apart at most.
//
// It reads the servers from the environment that scripts/test-servers.sh env
// prints (make bench sets it up).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
)

// env is what every workload needs: the server, its folder on disk, tools.
type env struct {
	url      string // proftpd root URL, no password
	root     string // proftpd's folder on disk
	user     string
	password string
	work     string // scratch folder for this run
	goSrc    string // a Go source tree to copy as the "src" workload
	bigSize  int64  // size of the large-file workloads
	log      logrus.FieldLogger

	// rclone's environment is made once: rclone names its cache folder
	// after a hash of the remote's settings, and the obscured password
	// differs on every call, so a remount with a fresh one would not find
	// the cache of the previous mount.
	leftovers []string // folders to remove at the end of a workload (removeLater)
	scratch   string   // a new file system's mount point (freshFilesystem), or ""

	rcloneOnce sync.Once
	rcloneVars []string
	rcloneErr  error
}

// result is one row of the table.
type result struct {
	issue   int
	name    string
	ours    float64 // seconds, or MiB/s when higher is better
	ref     float64
	refName string
	unit    string  // "s" or "MiB/s"
	limit   float64 // the ratio the issue demands
	atLeast bool    // ratio must be >= limit (throughput); else <= limit (time)
	note    string
	behave  *behaviour // set for a behaviour scenario, printed in its own table
}

func (r result) ratio() float64 {
	if r.ref == 0 {
		return 0
	}
	return r.ours / r.ref
}

func (r result) pass() bool {
	if r.behave != nil {
		return r.behave.ok
	}
	if r.limit == 0 {
		return true
	}
	if r.atLeast {
		return r.ratio() >= r.limit
	}
	return r.ratio() <= r.limit
}

// workload measures one figure and its reference.
type workload struct {
	issue int
	name  string
	run   func(ctx context.Context, e *env) ([]result, error)
}

func main() {
	only := flag.String("run", "", "run only the workloads whose name matches this regular expression")
	big := flag.Int64("big-mib", 1024, "size of the large file in MiB")
	keep := flag.Bool("keep", false, "keep the scratch folder")
	verbose := flag.Bool("v", false, "log progress")
	flag.Parse()

	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	if *verbose {
		log.SetLevel(logrus.InfoLevel)
	}
	e, err := loadEnv(*big<<20, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	var re *regexp.Regexp
	if *only != "" {
		re = regexp.MustCompile(*only)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var results []result
	failed := false
	for _, w := range workloads() {
		if re != nil && !re.MatchString(w.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s ...\n", w.name)
		start := time.Now()
		rs, err := w.run(ctx, e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", w.name, err)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s done in %s\n", w.name, time.Since(start).Round(time.Millisecond))
		results = append(results, rs...)
	}
	var figures, behaviours []result
	for _, r := range results {
		if r.behave != nil {
			behaviours = append(behaviours, r)
		} else {
			figures = append(figures, r)
		}
	}
	if len(figures) > 0 {
		printTable(figures)
	}
	if len(behaviours) > 0 {
		fmt.Println()
		printBehaviour(os.Stdout, behaviours, rcloneVersion())
	}
	for _, r := range results {
		if !r.pass() {
			failed = true
		}
	}
	// os.Exit skips deferred calls: the scratch folder goes first.
	if !*keep {
		os.RemoveAll(e.work)
	}
	if failed {
		os.Exit(1)
	}
}

func loadEnv(bigSize int64, log logrus.FieldLogger) (*env, error) {
	e := &env{
		url:      os.Getenv("FTPSYNC_TEST_PROFTPD_URL"),
		root:     os.Getenv("FTPSYNC_TEST_PROFTPD_ROOT"),
		password: os.Getenv("FTPSYNC_TEST_PASSWORD"),
		goSrc:    os.Getenv("FTPSYNC_BENCH_GOSRC"),
		bigSize:  bigSize,
		log:      log,
	}
	if e.url == "" || e.root == "" || e.password == "" {
		return nil, fmt.Errorf("FTPSYNC_TEST_PROFTPD_URL, FTPSYNC_TEST_PROFTPD_ROOT and FTPSYNC_TEST_PASSWORD must be set: run it through 'make bench'")
	}
	if e.goSrc == "" {
		e.goSrc = filepath.Join(goroot(), "src")
	}
	u := strings.TrimPrefix(e.url, "ftp://")
	if at := strings.Index(u, "@"); at > 0 {
		e.user = u[:at]
	}
	work, err := os.MkdirTemp("", "ftpsync-bench-")
	if err != nil {
		return nil, err
	}
	e.work = work
	return e, nil
}

func printTable(results []result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "issue\tworkload\tours\treference\tratio\trequired\tresult")
	for _, r := range results {
		req := "-"
		if r.limit != 0 {
			op := "<="
			if r.atLeast {
				op = ">="
			}
			req = fmt.Sprintf("%s %.2fx", op, r.limit)
		}
		verdict := "ok"
		if !r.pass() {
			verdict = "FAIL"
		}
		if r.note != "" {
			verdict += " (" + r.note + ")"
		}
		fmt.Fprintf(tw, "#%d\t%s\t%s\t%s %s\t%.2fx\t%s\t%s\n", r.issue, r.name,
			fmtVal(r.ours, r.unit), r.refName, fmtVal(r.ref, r.unit), r.ratio(), req, verdict)
	}
	tw.Flush()
}

// rcloneVersion is the first line of rclone version, such as "rclone v1.60.1-DEV".
func rcloneVersion() string {
	out, err := exec.Command("rclone", "version").Output()
	if err != nil {
		return "rclone: " + err.Error()
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

func fmtVal(v float64, unit string) string {
	if unit == "s" {
		return fmt.Sprintf("%.3fs", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
