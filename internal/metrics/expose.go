package metrics

import (
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ContentType is what Prometheus expects for the text format 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteText writes every family in the Prometheus text exposition format
// 0.0.4: families sorted by name, each with its # HELP and # TYPE lines and
// its series sorted by label values, so that two scrapes of an idle
// process are byte for byte the same.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := make([]*family, 0, len(r.families))
	for _, f := range r.families {
		fams = append(fams, f)
	}
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })

	var b strings.Builder
	for _, f := range fams {
		f.render(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (f *family) render(b *strings.Builder) {
	f.mu.RLock()
	keys := make([]string, 0, len(f.series))
	for k := range f.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ss := make([]series, len(keys))
	for i, k := range keys {
		ss[i] = f.series[k]
	}
	f.mu.RUnlock()

	b.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n")
	b.WriteString("# TYPE " + f.name + " " + string(f.kind) + "\n")
	for i, s := range ss {
		s.render(b, f.name, f.labelPairs(keys[i]))
	}
}

// labelPairs renders the label values of one series key as name="value"
// pairs, without braces.
func (f *family) labelPairs(key string) string {
	if len(f.labels) == 0 {
		return ""
	}
	values := strings.Split(key, labelSep)
	pairs := make([]string, len(f.labels))
	for i, l := range f.labels {
		pairs[i] = l + `="` + escapeLabel(values[i]) + `"`
	}
	return strings.Join(pairs, ",")
}

// sample writes one line: name{labels,extra} value. extra is an already
// rendered pair (a histogram's le).
func sample(b *strings.Builder, name, labels, extra, value string) {
	b.WriteString(name)
	switch {
	case labels != "" && extra != "":
		b.WriteString("{" + labels + "," + extra + "}")
	case labels != "":
		b.WriteString("{" + labels + "}")
	case extra != "":
		b.WriteString("{" + extra + "}")
	}
	b.WriteString(" " + value + "\n")
}

// escapeHelp escapes a help text: the format allows any UTF-8 there but
// ends the line at a newline, so backslash and newline are escaped.
func escapeHelp(s string) string { return helpEscaper.Replace(s) }

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
)

// escapeLabel escapes a label value: backslash, double quote and newline.
// Label values here are mostly fixed words, but an error kind or a path a
// caller passes must not break the line.
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// formatFloat writes a sample value or bucket bound as Prometheus parses it.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the registry at GET (and HEAD) requests.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "metrics: use GET", http.StatusMethodNotAllowed)
			return
		}
		var b strings.Builder
		// Writing to a strings.Builder does not fail.
		_ = r.WriteText(&b)
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		if req.Method == http.MethodHead {
			return
		}
		// A failed write means the scraper went away; nothing to do.
		_, _ = io.WriteString(w, b.String())
	})
}
