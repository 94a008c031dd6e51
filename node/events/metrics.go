package events

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts events for Prometheus: every event by kind and outcome,
// and protocol message bytes by protocol and direction. It derives from the
// event stream, so every service is counted without a metrics hook of its
// own, and the counters mean exactly what the log says.
type Metrics struct {
	events *prometheus.CounterVec
	bytes  *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "p2pjobs", Name: "events_total",
			Help: "Node events by kind (see the event log schema) and outcome (ok or error).",
		}, []string{"kind", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "p2pjobs", Name: "message_bytes_total",
			Help: "Protocol message bytes by protocol and direction (in or out).",
		}, []string{"protocol", "dir"}),
	}
	reg.MustRegister(m.events, m.bytes)
	return m
}

// Observe is an observer for WithObserver.
func (m *Metrics) Observe(e *Event) {
	outcome := "ok"
	if e.Err != "" || e.Kind == Error {
		outcome = "error"
	}
	m.events.WithLabelValues(string(e.Kind), outcome).Inc()
	if e.Kind == MsgSent || e.Kind == MsgRecv {
		m.bytes.WithLabelValues(e.Proto, e.Dir).Add(float64(e.Size))
	}
}
