package protocols

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func loopbackPair(t *testing.T) (host.Host, host.Host) {
	t.Helper()
	var hs [2]host.Host
	for i := range hs {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Close() })
		hs[i] = h
	}
	if err := hs[1].Connect(context.Background(), peer.AddrInfo{ID: hs[0].ID(), Addrs: hs[0].Addrs()}); err != nil {
		t.Fatal(err)
	}
	return hs[0], hs[1]
}

// TestHandleRecoversAndAccounts: a handler that panics resets its stream
// (the peer sees an error, the node lives and serves the next stream), the
// stream is attached to the named service, and memory reserved for it is
// accounted while held and given back on release.
func TestHandleRecoversAndAccounts(t *testing.T) {
	srv, cli := loopbackPair(t)
	const proto = "/p2pjobs/test-handle/1.0.0"
	var (
		mu      sync.Mutex
		errs    []error
		service string
		held    int64
	)
	srv.SetStreamHandler(proto, Handle("p2pjobs.test", func(s network.Stream) error {
		b := make([]byte, 1)
		if _, err := s.Read(b); err != nil {
			return err
		}
		if b[0] == 'p' {
			panic("boom")
		}
		release, err := Reserve(s, 1<<20, network.ReservationPriorityAlways)
		if err != nil {
			return err
		}
		mu.Lock()
		if ms, ok := s.Scope().(network.StreamManagementScope); ok && ms.ServiceScope() != nil {
			service = ms.ServiceScope().Name()
		}
		held = s.Scope().Stat().Memory
		mu.Unlock()
		release()
		release() // twice is harmless
		if m := s.Scope().Stat().Memory; m != 0 {
			return errors.New("reservation not released")
		}
		_, err = s.Write([]byte("ok"))
		_ = s.Close()
		return err
	}, func(_ network.Stream, err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))

	send := func(c byte) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := cli.NewStream(ctx, srv.ID(), proto)
		if err != nil {
			return nil, err
		}
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.Write([]byte{c}); err != nil {
			return nil, err
		}
		_ = s.CloseWrite()
		buf := make([]byte, 2)
		n, err := s.Read(buf)
		return buf[:n], err
	}
	if _, err := send('p'); err == nil {
		t.Fatal("the peer of a panicking handler read no error")
	}
	if got, err := send('x'); err != nil || string(got) != "ok" {
		t.Fatalf("after a panic: %q %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 {
		t.Fatalf("errors reported: %v", errs)
	}
	if held != 1<<20 {
		t.Fatalf("stream scope held %d bytes during the reservation, want %d", held, 1<<20)
	}
	if service != "p2pjobs.test" {
		t.Fatalf("stream attached to service %q", service)
	}
}
