package metrics

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// mustScrapeText scrapes m's handler over HTTP as Prometheus does and
// returns the text exposition.
func mustScrapeText(tb testing.TB, m *Metrics) string {
	tb.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		tb.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape: status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		tb.Fatalf("scrape: Content-Type %q, want the text format", ct)
	}
	return string(body)
}

// mustScrape scrapes m and parses the result with Prometheus's own text
// parser, with the legacy (strictest) name rules.
func mustScrape(tb testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	tb.Helper()
	return mustParse(tb, mustScrapeText(tb, m))
}

func mustParse(tb testing.TB, text string) map[string]*dto.MetricFamily {
	tb.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		tb.Fatalf("parse scrape: %v\n%s", err, text)
	}
	return fams
}

// labelsOf returns a metric's labels as a map.
func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// find returns the metric of family name whose labels are exactly labels.
func find(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (*dto.Metric, bool) {
	for _, m := range fams[name].GetMetric() {
		if maps.Equal(labelsOf(m), labels) {
			return m, true
		}
	}
	return nil, false
}

// mustValue returns the value of a counter, gauge or untyped sample of
// family name with exactly labels, failing if there is none.
func mustValue(tb testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	tb.Helper()
	m, ok := find(fams, name, labels)
	if !ok {
		tb.Fatalf("no %s%v in the scrape; it has %v", name, labels, seriesOf(fams[name]))
	}
	switch fams[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	tb.Fatalf("%s is a %v, not a counter or gauge", name, fams[name].GetType())
	return 0
}

// mustHistogram returns the histogram of family name with exactly labels.
func mustHistogram(tb testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Histogram {
	tb.Helper()
	m, ok := find(fams, name, labels)
	if !ok || fams[name].GetType() != dto.MetricType_HISTOGRAM {
		tb.Fatalf("no histogram %s%v in the scrape; it has %v", name, labels, seriesOf(fams[name]))
	}
	return m.GetHistogram()
}

// seriesOf lists a family's label sets, for failure messages.
func seriesOf(f *dto.MetricFamily) []map[string]string {
	var out []map[string]string
	for _, m := range f.GetMetric() {
		out = append(out, labelsOf(m))
	}
	return out
}

// wantType fails unless family name exists with type typ.
func wantType(tb testing.TB, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType) {
	tb.Helper()
	f, ok := fams[name]
	if !ok {
		tb.Fatalf("no family %s in the scrape; it has %v", name, slices.Sorted(maps.Keys(fams)))
	}
	if f.GetType() != typ {
		tb.Fatalf("%s is a %v, want %v", name, f.GetType(), typ)
	}
}

// l builds a label map from name, value pairs.
func l(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
