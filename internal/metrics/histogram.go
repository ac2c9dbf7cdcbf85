package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// UploadBuckets are upper bounds in seconds for upload latency: from a small
// file on a LAN (10 ms) to a large one over a slow link (10 minutes).
var UploadBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Histogram counts observations into buckets, as Prometheus histograms do,
// to show the spread of a latency, not only its mean.
type Histogram struct {
	bounds []float64       // read only: upper bounds, ascending, without +Inf
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one value; a nil *Histogram ignores it, as a nil
// *Counter does.
func (h *Histogram) Observe(v float64) {
	if h == nil {
		return
	}
	// The first bucket whose bound is >= v: Prometheus buckets are "le".
	i := sort.SearchFloat64s(h.bounds, v)
	h.counts[i].Add(1)
	addFloat(&h.sum, v)
}

// ObserveSince records the seconds elapsed since start.
func (h *Histogram) ObserveSince(start time.Time) {
	if h != nil {
		h.Observe(time.Since(start).Seconds())
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// render writes cumulative buckets. The count is the +Inf bucket as
// rendered, not a separate atomic, so that a scrape racing an Observe still
// shows _count equal to the +Inf bucket; the sum may run one observation
// ahead or behind, as with any Prometheus client.
func (h *Histogram) render(b *strings.Builder, name, labels string) {
	var cum uint64
	for i, bound := range h.bounds {
		cum += h.counts[i].Load()
		sample(b, name+"_bucket", labels, `le="`+formatFloat(bound)+`"`, fmt.Sprint(cum))
	}
	cum += h.counts[len(h.bounds)].Load()
	sample(b, name+"_bucket", labels, `le="+Inf"`, fmt.Sprint(cum))
	sample(b, name+"_sum", labels, "", formatFloat(math.Float64frombits(h.sum.Load())))
	sample(b, name+"_count", labels, "", fmt.Sprint(cum))
}

// checkBuckets panics unless the bounds are finite and strictly ascending:
// a programming error, caught at start-up.
func checkBuckets(name string, bounds []float64) {
	if len(bounds) == 0 {
		panic(fmt.Sprintf("metrics: histogram %s needs at least one bucket", name))
	}
	for i, v := range bounds {
		if math.IsNaN(v) || math.IsInf(v, 0) || (i > 0 && v <= bounds[i-1]) {
			panic(fmt.Sprintf("metrics: histogram %s: buckets must be finite and ascending, got %v", name, bounds))
		}
	}
}

// Histogram registers (or finds) an unlabelled histogram with the given
// bucket upper bounds (ascending; +Inf is added).
func (r *Registry) Histogram(name, help string, buckets []float64) *Histogram {
	checkBuckets(name, buckets)
	f := r.register(name, help, kindHistogram, nil, buckets)
	return f.get(nil, func() series { return newHistogram(slices.Clone(buckets)) }).(*Histogram)
}
