package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/term"

	"github.com/petra-oci/petra-oci/graphcopy"
)

// progress renders a one-line blob counter on stderr, only when stderr is a terminal
// (logs and results stay clean when piped or redirected).
type progress struct {
	w         io.Writer
	mu        sync.Mutex
	copied    int
	existed   int
	bytes     int64
	lastPrint time.Time
}

// newProgress returns a progress line on w, or nil when w is not a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progress{w: w}
}

// blob counts one blob; nil-safe, so callers pass p.onBlob() unconditionally.
func (p *progress) onBlob() func(ocispec.Descriptor, graphcopy.How) {
	if p == nil {
		return nil
	}
	return func(d ocispec.Descriptor, how graphcopy.How) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if how == graphcopy.Existed {
			p.existed++
		} else {
			p.copied++
			p.bytes += d.Size
		}
		if time.Since(p.lastPrint) > 200*time.Millisecond {
			p.lastPrint = time.Now()
			p.print()
		}
	}
}

func (p *progress) print() {
	fmt.Fprintf(p.w, "\r\033[K%d blobs transferred (%.1f MiB), %d already there", p.copied, float64(p.bytes)/(1<<20), p.existed)
}

// done ends the progress line.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.print()
	fmt.Fprintln(p.w)
}
