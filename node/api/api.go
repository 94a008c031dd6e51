// Package api is a running node's local control API: HTTP over a unix
// socket in the data directory (owner-only), used by `p2pnode submit` and
// `p2pnode status` so that one process owns the identity and the ledger.
package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/runner"
)

// Backend is what the server needs from the node.
type Backend interface {
	Status() any
	Client() *client.Client // nil when the node is not a client
	Builtins() map[string][]byte
	Ledger() Ledger // nil when the node keeps no ledger (ledger.go)
}

// Observer is a Backend that also follows the series it runs (the node's
// live view); optional.
type Observer interface {
	ObserveSeries(runner.Message)
}

// Server serves the API on a unix socket.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	path string
	done chan struct{}
}

// Listen starts serving b on the unix socket at path (mode 0600). A stale
// socket left by a crashed node is replaced; a live one is an error.
func Listen(path string, b Backend) (*Server, error) {
	if Alive(path) {
		return nil, fmt.Errorf("api: another node serves %s", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.Status())
	})
	mux.HandleFunc("POST /v1/series", func(w http.ResponseWriter, r *http.Request) { serveSeries(w, r, b) })
	ledgerRoutes(mux, b)
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, path: path, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func serveSeries(w http.ResponseWriter, r *http.Request, b Backend) {
	var req runner.SubmitRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || !filepath.IsAbs(req.SpecPath) {
		http.Error(w, "want JSON {\"spec_path\": \"/absolute/path.yaml\"}", http.StatusBadRequest)
		return
	}
	c := b.Client()
	if c == nil {
		http.Error(w, "this node does not have the client role (start it with --role client or worker,client)", http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	obs, _ := b.(Observer)
	emit := func(m runner.Message) {
		if obs != nil {
			obs.ObserveSeries(m)
		}
		_ = enc.Encode(m)
		if fl != nil {
			fl.Flush()
		}
	}
	// The series stops when the submitter goes away (Ctrl-C on submit).
	if _, err := runner.RunSpec(r.Context(), c, req, b.Builtins(), emit); err != nil {
		emit(runner.Message{Kind: "error", Error: err.Error()})
	}
}

// Close stops the server and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	_ = os.Remove(s.path)
	return err
}

func httpClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// Alive reports whether a node answers on the socket at path.
func Alive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// GetStatus fetches a running node's status into v.
func GetStatus(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://node/v1/status", nil)
	resp, err := httpClient(path).Do(req)
	if err != nil {
		return fmt.Errorf("api: no node running here (%s): %w", path, err)
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// Submit hands a series to the node at path and calls fn for each message.
func Submit(ctx context.Context, path string, sr runner.SubmitRequest, fn func(runner.Message)) error {
	body, _ := json.Marshal(sr)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://node/v1/series", bytes.NewReader(body))
	resp, err := httpClient(path).Do(req)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("api: node says: %s", bytes.TrimSpace(msg))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m runner.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("api: bad message from node: %w", err)
		}
		fn(m)
	}
	return sc.Err()
}
