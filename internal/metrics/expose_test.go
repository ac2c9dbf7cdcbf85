package metrics

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"
)

// goldenRegistry fills a registry with one of each kind, including label
// values that need escaping.
func goldenRegistry() *Registry {
	r := NewRegistry()
	r.Counter("ftpsync_b_total", "Plain counter.").Add(3)
	v := r.CounterVec("ftpsync_a_total", "Counter with a \\ backslash\nand a newline.", "op", "kind")
	v.With("write", "not_found").Inc()
	v.With(`say "hi"`, "back\\slash\nnew").Add(2)
	r.Gauge("ftpsync_g", "Gauge.").Set(-1.5)
	r.GaugeFunc("ftpsync_queue", "Gauge read at scrape time.", func() float64 { return 7 })
	h := r.Histogram("ftpsync_h_seconds", "Histogram.", []float64{0.1, 1, 10})
	for _, x := range []float64{0.05, 0.1, 0.5, 3, 100} {
		h.Observe(x)
	}
	return r
}

const golden = `# HELP ftpsync_a_total Counter with a \\ backslash\nand a newline.
# TYPE ftpsync_a_total counter
ftpsync_a_total{op="say \"hi\"",kind="back\\slash\nnew"} 2
ftpsync_a_total{op="write",kind="not_found"} 1
# HELP ftpsync_b_total Plain counter.
# TYPE ftpsync_b_total counter
ftpsync_b_total 3
# HELP ftpsync_g Gauge.
# TYPE ftpsync_g gauge
ftpsync_g -1.5
# HELP ftpsync_h_seconds Histogram.
# TYPE ftpsync_h_seconds histogram
ftpsync_h_seconds_bucket{le="0.1"} 2
ftpsync_h_seconds_bucket{le="1"} 3
ftpsync_h_seconds_bucket{le="10"} 4
ftpsync_h_seconds_bucket{le="+Inf"} 5
ftpsync_h_seconds_sum 103.65
ftpsync_h_seconds_count 5
# HELP ftpsync_queue Gauge read at scrape time.
# TYPE ftpsync_queue gauge
ftpsync_queue 7
`

func TestWriteTextGolden(t *testing.T) {
	var b strings.Builder
	if err := goldenRegistry().WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if b.String() != golden {
		t.Fatalf("exposition differs.\ngot:\n%s\nwant:\n%s", b.String(), golden)
	}
	checkExposition(t, b.String())
	_, samples := parseExposition(t, b.String())
	if l := samples[0].labels; l["op"] != `say "hi"` || l["kind"] != "back\\slash\nnew" {
		t.Fatalf("escaped labels read back as %q", l)
	}
}

// reporter is the part of *testing.T the checkers use, so that a test can
// check the checkers themselves with a recorder.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// recorder notes failures; Fatalf ends its goroutine as testing.T's does.
type recorder struct{ failed bool }

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }

// parsedSample is one sample line read back.
type parsedSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseExposition reads the text format back with a small line parser, so
// the tests check what a scraper sees rather than our own strings.
func parseExposition(t reporter, text string) (types map[string]string, samples []parsedSample) {
	t.Helper()
	types = make(map[string]string)
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("line %d: bad TYPE line %q", i+1, line)
			}
			types[f[2]] = f[3]
			continue
		case strings.HasPrefix(line, "# HELP "):
			continue
		case line == "" || strings.HasPrefix(line, "#"):
			t.Fatalf("line %d: unexpected %q", i+1, line)
		}
		s, err := parseSample(line)
		if err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		samples = append(samples, s)
	}
	return types, samples
}

func parseSample(line string) (parsedSample, error) {
	s := parsedSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, fmt.Errorf("no name")
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for line[0] != '}' {
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return s, fmt.Errorf("bad label at %q", line)
			}
			name := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			for {
				if line == "" {
					return s, fmt.Errorf("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' {
					switch line[0] {
					case '\\', '"':
						val.WriteByte(line[0])
					case 'n':
						val.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c", line[0])
					}
					line = line[1:]
					continue
				}
				val.WriteByte(c)
			}
			s.labels[name] = val.String()
			line = strings.TrimPrefix(line, ",")
		}
		line = line[1:]
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, " "), 64)
	if err != nil {
		return s, err
	}
	s.value = v
	return s, nil
}

// checkExposition checks what Prometheus relies on: every sample belongs to
// a family with a TYPE line, histogram buckets are cumulative and ascending,
// and the +Inf bucket equals _count.
func checkExposition(t reporter, text string) {
	t.Helper()
	types, samples := parseExposition(t, text)
	lastLE := map[string]float64{}
	lastCum := map[string]float64{}
	inf := map[string]float64{}
	count := map[string]float64{}
	for _, s := range samples {
		base := s.name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(s.name, suf); ok && types[b] == "histogram" {
				base = b
			}
		}
		typ, ok := types[base]
		if !ok {
			t.Errorf("sample %s has no TYPE line", s.name)
			continue
		}
		if typ == "counter" && s.value < 0 {
			t.Errorf("counter %s is negative: %v", s.name, s.value)
		}
		switch s.name {
		case base + "_bucket":
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err != nil {
				t.Fatalf("%s: le %q: %v", s.name, s.labels["le"], err)
			}
			if prev, seen := lastLE[base]; seen && (le <= prev || s.value < lastCum[base]) {
				t.Errorf("%s: bucket le=%v count %v after le=%v count %v", base, le, s.value, prev, lastCum[base])
			}
			lastLE[base], lastCum[base] = le, s.value
			if math.IsInf(le, 1) {
				inf[base] = s.value
			}
		case base + "_count":
			count[base] = s.value
		}
	}
	for name, typ := range types {
		if typ != "histogram" {
			continue
		}
		if v, ok := inf[name]; !ok || v != count[name] {
			t.Errorf("%s: +Inf bucket %v (present %v) != count %v", name, v, ok, count[name])
		}
	}
}

func TestRegisterSameNameReturnsSameSeries(t *testing.T) {
	r := NewRegistry()
	a := r.CounterVec("x_total", "x", "op").With("stat")
	a.Inc()
	b := r.CounterVec("x_total", "x", "op").With("stat")
	if a != b || b.Value() != 1 {
		t.Fatalf("second registration gave a different counter (value %d)", b.Value())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering x_total as a gauge did not panic")
		}
	}()
	r.Gauge("x_total", "x")
}

// TestConcurrentObserveKeepsCount scrapes while writers observe: every
// scrape must still show +Inf == _count, and the final count is exact.
func TestConcurrentObserveKeepsCount(t *testing.T) {
	r := NewRegistry()
	h := r.Histogram("lat_seconds", "l", []float64{1, 2})
	c := r.Counter("n_total", "n")
	var wg gosync.WaitGroup
	const writers, each = 4, 2000
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h.Observe(float64((i + w) % 4))
				c.Inc()
			}
		}()
	}
	for range 20 {
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		checkExposition(t, b.String())
	}
	wg.Wait()
	if h.Count() != writers*each || c.Value() != writers*each {
		t.Fatalf("count %d, counter %d, want %d", h.Count(), c.Value(), writers*each)
	}
}

func TestHandlerServesOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: goldenRegistry().Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	client := &http.Client{Timeout: 5 * time.Second}

	resp, err := client.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if string(body) != golden {
		t.Fatalf("body differs:\n%s", body)
	}

	resp, err = client.Post("http://"+ln.Addr().String()+"/metrics", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: status %d, want 405", resp.StatusCode)
	}
}

// TestNilHandlesIgnoreUpdates: another package keeps a *Counter or
// *Histogram as an optional hook that stays nil when metrics are off.
func TestNilHandlesIgnoreUpdates(t *testing.T) {
	var c *Counter
	c.Inc()
	c.Add(5)
	var h *Histogram
	h.Observe(1)
	h.ObserveSince(time.Now())
}

func TestCheckExpositionCatchesBrokenHistograms(t *testing.T) {
	for name, text := range map[string]string{
		"inf differs from count": "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n",
		"not cumulative":         "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
		"no type line":           "x_total 1\n",
	} {
		ft := &recorder{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			checkExposition(ft, text)
		}()
		<-done
		if !ft.failed {
			t.Errorf("%s: the checker passed %q", name, text)
		}
	}
}
