package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// SentFile is the journal of which worker each job was sent to
// (results/<series>/sent.jsonl): after a crash, --resume offers the jobs
// not done to the worker they were sent to, which hands back the result it
// kept instead of running the job, and being paid for it, again.
const SentFile = "sent.jsonl"

type sentLine struct {
	Job    string `json:"job"`
	Worker string `json:"worker"`
	Bid    []byte `json:"bid,omitempty"`   // the bid id it was sent under
	Price  uint64 `json:"price,omitempty"` // that bid's price per job
}

// sentLog appends to the sent journal: one write per line, no buffer, so
// that a client killed at any moment leaves every line it sent on disk but
// the one being written.
type sentLog struct {
	mu sync.Mutex
	f  *os.File
}

func openSent(dir string, resume bool) (*sentLog, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if !resume {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(filepath.Join(dir, SentFile), flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("runner: sent journal: %w", err)
	}
	if resume {
		_, _ = f.Write([]byte("\n")) // end a line torn by a crash
	}
	return &sentLog{f: f}, nil
}

func (l *sentLog) add(job string, worker peer.ID, bid *pb.Bid) error {
	b, err := json.Marshal(sentLine{Job: job, Worker: worker.String(), Bid: bid.GetBidId(), Price: bid.GetPricePerJob()})
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.f.Write(append(b, '\n'))
	return err
}

func (l *sentLog) Close() error { return l.f.Close() }

// Sent reads dir's sent journal: every send of each job, oldest first (a
// job re-sent to a backup worker, or by an earlier resumed run, has
// several, and each of those workers may have kept a result). A missing
// journal is empty; torn or foreign lines are skipped.
func Sent(dir string) (map[string][]client.PriorSend, error) {
	f, err := os.Open(filepath.Join(dir, SentFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]client.PriorSend{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runner: sent journal: %w", err)
	}
	defer f.Close()
	out := map[string][]client.PriorSend{}
	err = shortLines(f, maxSentLine, func(b []byte) {
		var l sentLine
		if json.Unmarshal(b, &l) != nil || l.Job == "" {
			return
		}
		id, err := peer.Decode(l.Worker)
		if err != nil {
			return
		}
		out[l.Job] = append(out[l.Job], client.PriorSend{Worker: id, BidID: l.Bid, Price: l.Price})
	})
	if err != nil {
		return nil, fmt.Errorf("runner: sent journal: %w", err)
	}
	return out, nil
}

// maxSentLine bounds one journal line: a job ID, a peer ID and a bid ID.
const maxSentLine = 64 << 10

// shortLines calls fn with each line of r (without its newline) of at
// most max bytes, and skips longer ones: a journal whose tail a power loss
// filled with zeros has one such "line", and the lines around it still
// count.
func shortLines(r io.Reader, max int, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, max)
	long := false
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			long = true
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		if !long && len(b) > 0 {
			fn(bytes.TrimSuffix(b, []byte("\n")))
		}
		long = false
		if err != nil {
			return nil
		}
	}
}
