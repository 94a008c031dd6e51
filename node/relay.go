package node

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// relayService is an authority's circuit relay v2 service.
//
// libp2p.EnableRelayService starts the relay only while AutoNAT says the
// host is publicly reachable (p2p/host/relaysvc), and a lone authority, or
// one whose peers all sit behind NAT, never hears that: it served no
// /libp2p/circuit/relay/0.2.0/hop and no worker behind NAT could reserve a
// slot. An authority is the network's relay by role, so it runs the service
// from the start, whatever AutoNAT says; AutoNAT keeps running for the
// node's own reachability (status), untouched.
type relayService struct {
	r      *relay.Relay
	tracer *relayTracer
}

// RelayStatus is what `status` shows of the relay service.
type RelayStatus struct {
	On           bool `json:"on"`
	Reservations int  `json:"reservations"` // slots held by peers now
	Max          int  `json:"max_reservations,omitempty"`
}

func relayResources(cfg *Config) relay.Resources {
	res := relay.DefaultResources()
	res.Limit = &relay.RelayLimit{Duration: cfg.Authority.RelayDuration, Data: cfg.Authority.RelayData}
	res.MaxReservations = cfg.Authority.RelayReservations
	res.MaxCircuits = cfg.Authority.RelayCircuits
	res.MaxReservationsPerIP = cfg.Authority.RelayReservations
	return res
}

// startRelay starts the relay service on h.
func startRelay(h host.Host, cfg *Config, reg prometheus.Registerer) (*relayService, error) {
	t := &relayTracer{}
	if reg != nil {
		t.next = relay.NewMetricsTracer(relay.WithRegisterer(reg))
	}
	r, err := relay.New(h, relay.WithResources(relayResources(cfg)), relay.WithMetricsTracer(t))
	if err != nil {
		return nil, fmt.Errorf("node: relay service: %w", err)
	}
	return &relayService{r: r, tracer: t}, nil
}

func (s *relayService) status(cfg *Config) RelayStatus {
	if s == nil {
		return RelayStatus{}
	}
	return RelayStatus{On: true, Reservations: int(max(s.tracer.reservations.Load(), 0)), Max: cfg.Authority.RelayReservations}
}

func (s *relayService) Close() error {
	if s == nil {
		return nil
	}
	return s.r.Close()
}

// relayTracer counts the reservations the relay holds (the relay keeps
// them in an unexported map) and passes every call on to libp2p's
// Prometheus tracer when metrics are on.
type relayTracer struct {
	reservations atomic.Int64
	next         relay.MetricsTracer // nil without metrics
}

var _ relay.MetricsTracer = (*relayTracer)(nil)

func (t *relayTracer) RelayStatus(enabled bool) {
	if t.next != nil {
		t.next.RelayStatus(enabled)
	}
}

func (t *relayTracer) ConnectionOpened() {
	if t.next != nil {
		t.next.ConnectionOpened()
	}
}

func (t *relayTracer) ConnectionClosed(d time.Duration) {
	if t.next != nil {
		t.next.ConnectionClosed(d)
	}
}

func (t *relayTracer) ConnectionRequestHandled(st pbv2.Status) {
	if t.next != nil {
		t.next.ConnectionRequestHandled(st)
	}
}

// ReservationAllowed is called for a new reservation and for a renewal;
// only a new one adds a slot.
func (t *relayTracer) ReservationAllowed(isRenewal bool) {
	if !isRenewal {
		t.reservations.Add(1)
	}
	if t.next != nil {
		t.next.ReservationAllowed(isRenewal)
	}
}

// ReservationClosed is called when reservations expire (gc) or their peer
// disconnects.
func (t *relayTracer) ReservationClosed(cnt int) {
	t.reservations.Add(-int64(cnt))
	if t.next != nil {
		t.next.ReservationClosed(cnt)
	}
}

func (t *relayTracer) ReservationRequestHandled(st pbv2.Status) {
	if t.next != nil {
		t.next.ReservationRequestHandled(st)
	}
}

func (t *relayTracer) BytesTransferred(cnt int) {
	if t.next != nil {
		t.next.BytesTransferred(cnt)
	}
}
