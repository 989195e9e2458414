package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// unknown is the label value for build facts the binary does not carry
// (a build without VCS stamping has no revision); an empty label value
// would make Prometheus drop the label.
const unknown = "unknown"

// newBuildInfo returns spooky_build_info{version, goversion, revision} = 1,
// read once from the binary's build information.
func newBuildInfo(version string) prometheus.Collector {
	goversion, revision := runtime.Version(), unknown
	modVersion := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goversion = bi.GoVersion
		modVersion = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = modVersion
	}
	if version == "" {
		version = unknown
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Build information of the running spooky binary; always 1.",
		ConstLabels: prometheus.Labels{
			"version": version, "goversion": goversion, "revision": revision,
		},
	})
	g.Set(1)
	return g
}
