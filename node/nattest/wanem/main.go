// Command wanem is the NAT lab's WAN emulator: this machine's kernel has no
// sch_netem, so delay and loss come from this forwarder instead. It creates
// two TAP interfaces, each in its own network namespace (A: a router's
// "wan" side; B: its port on the lab's internet bridge), and copies
// Ethernet frames between them. Frames from A to B (the router's egress)
// are dropped with probability -loss percent and delayed by -delay plus a
// uniform jitter in [-jitter, +jitter], without reordering; frames from B to
// A pass at once. TAP devices without offloads get segmented frames, so
// every frame fits the MTU. Used by scripts/natlab.sh --impair; test
// tooling only (root, Linux).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	var (
		nsA    = flag.String("a-ns", "", "network namespace file of side A (e.g. /var/run/netns/x)")
		tapA   = flag.String("a", "wan", "TAP interface to create in A")
		nsB    = flag.String("b-ns", "", "network namespace file of side B")
		tapB   = flag.String("b", "", "TAP interface to create in B")
		delay  = flag.Duration("delay", 40*time.Millisecond, "delay of frames from A to B")
		jitter = flag.Duration("jitter", 10*time.Millisecond, "uniform jitter around -delay")
		loss   = flag.Float64("loss", 1, "percent of frames from A to B dropped")
	)
	flag.Parse()
	if err := run(*nsA, *tapA, *nsB, *tapB, *delay, *jitter, *loss); err != nil {
		fmt.Fprintln(os.Stderr, "wanem:", err)
		os.Exit(1)
	}
}

func run(nsA, tapA, nsB, tapB string, delay, jitter time.Duration, loss float64) error {
	if nsA == "" || nsB == "" || tapB == "" {
		return errors.New("-a-ns, -b-ns and -b are required")
	}
	if jitter > delay {
		return errors.New("-jitter larger than -delay")
	}
	a, err := openTap(nsA, tapA)
	if err != nil {
		return err
	}
	b, err := openTap(nsB, tapB)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- forward(a, b, delay, jitter, loss) }()
	go func() { errc <- forward(b, a, 0, 0, 0) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// openTap creates a TAP interface in the namespace at nsPath. Namespaces
// are per thread: the work runs on a locked thread that dies with it.
func openTap(nsPath, name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open %s: %w", nsPath, err)}
			return
		}
		defer unix.Close(ns)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open /dev/net/tun: %w", err)}
			return
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			ch <- result{err: fmt.Errorf("TUNSETIFF %s: %w", name, err)}
			return
		}
		ch <- result{f: os.NewFile(uintptr(fd), name)}
	}()
	r := <-ch
	return r.f, r.err
}

type frame struct {
	b   []byte
	due time.Time
}

// forward copies frames from src to dst, dropping and delaying as told.
func forward(src, dst *os.File, delay, jitter time.Duration, loss float64) error {
	q := make(chan frame, 4096)
	go func() {
		for f := range q {
			if d := time.Until(f.due); d > 0 {
				time.Sleep(d)
			}
			_, _ = dst.Write(f.b) // a full or downed interface drops, as a wire would
		}
	}()
	defer close(q)
	var last time.Time
	for {
		buf := make([]byte, 65536)
		n, err := src.Read(buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", src.Name(), err)
		}
		if loss > 0 && rand.Float64()*100 < loss {
			continue
		}
		due := time.Now().Add(delay)
		if jitter > 0 {
			due = due.Add(time.Duration(rand.Int64N(int64(2*jitter+1))) - jitter)
		}
		if due.Before(last) { // jitter without reordering
			due = last
		}
		last = due
		select {
		case q <- frame{buf[:n], due}:
		default: // queue full: tail drop
		}
	}
}
