package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// healthDescs are the health advisor's metrics, read at scrape time from
// its last results.
type healthDescs struct {
	value, threshold, finding *prometheus.Desc
	up, lastSample            *prometheus.Desc
}

func newHealthDescs() healthDescs {
	l := []string{"database", "check", "object"}
	return healthDescs{
		value: prometheus.NewDesc("pgrecycle_health_value",
			"Last value the health advisor measured (bytes, seconds, transactions or counts, by check).", l, nil),
		threshold: prometheus.NewDesc("pgrecycle_health_threshold",
			"Threshold the value is compared with (see README, Health advisor).", l, nil),
		finding: prometheus.NewDesc("pgrecycle_health_finding",
			"1 while the value is over its threshold (a SHOW HEALTH row), 0 otherwise.", l, nil),
		up: prometheus.NewDesc("pgrecycle_health_up",
			"1 when the advisor's last round sampled the database, 0 when it could not (see SHOW HEALTH).", []string{"database"}, nil),
		lastSample: prometheus.NewDesc("pgrecycle_health_last_sample_timestamp_seconds",
			"Unix time of the advisor's last successful sample of the database.", []string{"database"}, nil),
	}
}

func (h healthDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{h.value, h.threshold, h.finding, h.up, h.lastSample} {
		ch <- d
	}
}

func (h healthDescs) collect(srv *Server, ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	rows, sts := srv.health.snapshot()
	for _, st := range sts {
		up := 0.0
		if st.up {
			up = 1
		}
		gauge(h.up, up, st.database)
		last := 0.0
		if !st.sampledAt.IsZero() {
			last = float64(st.sampledAt.UnixNano()) / 1e9
		}
		gauge(h.lastSample, last, st.database)
	}
	for _, r := range rows {
		it := r.item
		gauge(h.value, it.value, r.database, it.check, it.object)
		if it.hasThreshold {
			gauge(h.threshold, it.threshold, r.database, it.check, it.object)
		}
		f := 0.0
		if it.crossed {
			f = 1
		}
		gauge(h.finding, f, r.database, it.check, it.object)
	}
}
