// Package metrics holds the counters, gauges and histograms that
// `--metrics-addr` serves in the Prometheus text format (version 0.0.4).
// It is small on purpose: the program needs a handful of series, and a
// client library would be the only new dependency of the module.
//
// Updates are single atomic operations so that instrumented hot paths (every
// target call, every byte counted) pay almost nothing; the registry's lock is
// taken only to register a metric, to look up a labelled series for the first
// time, and to render a scrape.
package metrics

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
)

// kind is a metric family's Prometheus type.
type kind string

const (
	kindCounter   kind = "counter"
	kindGauge     kind = "gauge"
	kindHistogram kind = "histogram"
)

// family is one metric name with its help text and its series.
type family struct {
	name, help string
	kind       kind
	labels     []string  // label names; nil for a single unlabelled series
	buckets    []float64 // histograms only: upper bounds, ascending, no +Inf

	mu     gosync.RWMutex    // protects series
	series map[string]series // by label values joined with labelSep
}

// series is one time series of a family; render appends its sample lines.
type series interface {
	render(b *strings.Builder, name string, labels string)
}

// labelSep joins label values into a map key; it cannot occur in UTF-8 text
// that anyone puts in a label.
const labelSep = "\xff"

// Registry holds metric families and renders them for a scrape. The zero
// value is not usable; call NewRegistry.
type Registry struct {
	mu       gosync.Mutex       // protects families
	families map[string]*family // by name
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: make(map[string]*family)}
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// register returns the family called name, creating it if needed. Asking
// again for the same name with the same type and labels returns the same
// family, so that two wrapped targets share their counters. A bad name or a
// clash is a programming error, reported by a panic at start-up.
func (r *Registry) register(name, help string, k kind, labels []string, buckets []float64) *family {
	if !metricName.MatchString(name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", name))
	}
	for _, l := range labels {
		if !labelName.MatchString(l) || strings.HasPrefix(l, "__") || (k == kindHistogram && l == "le") {
			panic(fmt.Sprintf("metrics: invalid label name %q for %s", l, name))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[name]; ok {
		if f.kind != k || !slices.Equal(f.labels, labels) || !slices.Equal(f.buckets, buckets) {
			panic(fmt.Sprintf("metrics: %s registered twice with different types, labels or buckets", name))
		}
		return f
	}
	f := &family{name: name, help: help, kind: k, labels: slices.Clone(labels), buckets: slices.Clone(buckets),
		series: make(map[string]series)}
	r.families[name] = f
	return f
}

// get returns the series for the label values, creating it with mk.
func (f *family) get(values []string, mk func() series) series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	key := strings.Join(values, labelSep)
	f.mu.RLock()
	s, ok := f.series[key]
	f.mu.RUnlock()
	if ok {
		return s
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.series[key]; ok {
		return s
	}
	s = mk()
	f.series[key] = s
	return s
}

// Counter is a value that only goes up: operations done, bytes moved.
// A nil *Counter ignores updates, so that another package can take one as
// an optional hook (a field left nil when metrics are off) and call Inc
// without checking.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() {
	if c != nil {
		c.v.Add(1)
	}
}

// Add adds n; a negative n is ignored, since a counter never goes down.
func (c *Counter) Add(n int64) {
	if c != nil && n > 0 {
		c.v.Add(uint64(n))
	}
}

// Value is the current count.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) render(b *strings.Builder, name, labels string) {
	sample(b, name, labels, "", fmt.Sprint(c.v.Load()))
}

// Counter registers (or finds) an unlabelled counter.
//
// On a nil registry (metrics off) it returns a nil counter, whose updates
// do nothing, so callers need no branch.
func (r *Registry) Counter(name, help string) *Counter {
	if r == nil {
		return nil
	}
	f := r.register(name, help, kindCounter, nil, nil)
	return f.get(nil, func() series { return new(Counter) }).(*Counter)
}

// CounterVec is a counter family with labels, such as operations by op.
type CounterVec struct{ f *family }

// CounterVec registers (or finds) a labelled counter family.
func (r *Registry) CounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{f: r.register(name, help, kindCounter, labels, nil)}
}

// With returns the counter for the label values, in the order of the label
// names. Keep the result where the call is hot: With takes a lock.
func (v *CounterVec) With(values ...string) *Counter {
	return v.f.get(values, func() series { return new(Counter) }).(*Counter)
}

// Gauge is a value that goes up and down.
type Gauge struct{ bits atomic.Uint64 }

// Set stores v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (negative to subtract).
func (g *Gauge) Add(d float64) { addFloat(&g.bits, d) }

// Value is the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

func (g *Gauge) render(b *strings.Builder, name, labels string) {
	sample(b, name, labels, "", formatFloat(g.Value()))
}

// Gauge registers (or finds) an unlabelled gauge.
func (r *Registry) Gauge(name, help string) *Gauge {
	f := r.register(name, help, kindGauge, nil, nil)
	return f.get(nil, func() series { return new(Gauge) }).(*Gauge)
}

// gaugeFunc is a gauge read at scrape time, for values another package
// already keeps (the write-back queue length) so nothing has to push them.
type gaugeFunc struct{ fn func() float64 }

func (g gaugeFunc) render(b *strings.Builder, name, labels string) {
	sample(b, name, labels, "", formatFloat(g.fn()))
}

// GaugeFunc registers a gauge whose value fn returns at each scrape. fn is
// called from the HTTP handler's goroutine and must be safe for that; it
// should be cheap. Registering the same name again replaces fn, so that a
// remount can point the gauge at its new cache.
func (r *Registry) GaugeFunc(name, help string, fn func() float64) {
	f := r.register(name, help, kindGauge, nil, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.series[""] = gaugeFunc{fn: fn}
}

// addFloat adds d to the float64 stored as bits, with a compare-and-swap
// loop: contention is rare, so the loop almost always runs once.
func addFloat(bits *atomic.Uint64, d float64) {
	for {
		old := bits.Load()
		if bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}
