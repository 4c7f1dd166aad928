// Package job runs the SBOM and vulnerability analyzer (internal/analyze, which links
// syft and grype) in its own process, petra-oci-analyze, so that petra-oci itself stays
// small: verify, unpack and inspect never map syft's and grype's code. The protocol is
// JSON over the child's stdin and stdout: one Config, then a Request per image, each
// answered by a Response.
package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/referrers"
)

// Binary is the analyzer's executable name.
const Binary = "petra-oci-analyze"

// Config is sent once: how to analyze.
type Config struct {
	Dir        string                 `json:"dir"`
	VulnDB     string                 `json:"vulnDB,omitempty"`
	MaxDBAge   time.Duration          `json:"maxDBAge,omitempty"`
	Thresholds scanreport.Thresholds  `json:"thresholds"`
	Exceptions []scanreport.Exception `json:"exceptions,omitempty"`
	VEX        [][]byte               `json:"vex,omitempty"`
	Now        time.Time              `json:"now"`
	// Parallelism bounds the images the analyzer works on at once; 0: one per CPU.
	Parallelism int `json:"parallelism,omitempty"`
}

// Request is one image to analyze, once it is in the bundle (Config.Dir). It is the
// one analysis request: pack builds it (pack.Options.Analyze), the client sends it,
// and internal/analyze reads it on the other side.
type Request struct {
	// ID matches the Response to its Request: requests are answered as they finish,
	// not in order. The client sets it.
	ID         uint64             `json:"id,omitempty"`
	Repository string             `json:"repository"`
	Tag        string             `json:"tag,omitempty"`
	Root       ocispec.Descriptor `json:"root"`
	// Children are the packed platform manifests of an index.
	Children []ocispec.Descriptor `json:"children,omitempty"`
	// Attachments are the image's packed attachments.
	Attachments []referrers.Attachment `json:"attachments,omitempty"`
	// Verification is what the policy check proved (nil without a policy): only
	// attestations it verified may be used.
	Verification *imageverify.Result `json:"verification,omitempty"`
}

// Response answers a Request.
type Response struct {
	// ID is the Request's.
	ID          uint64                 `json:"id,omitempty"`
	Attachments []referrers.Attachment `json:"attachments,omitempty"`
	Error       string                 `json:"error,omitempty"`
	// Threshold is set when Error wraps scanreport.ErrThreshold; the client wraps it
	// again, so errors.Is(err, scanreport.ErrThreshold) holds after the hop.
	Threshold bool `json:"threshold,omitempty"`
}

// Find locates petra-oci-analyze: beside the running executable, else on $PATH.
func Find() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), Binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(Binary)
	if err != nil {
		return "", fmt.Errorf("%s not found beside petra-oci or on $PATH (make build installs both): %w", Binary, err)
	}
	return p, nil
}

// Client talks to one analyzer process. Analyze may be called from many goroutines:
// requests are sent as they come and the analyzer works on several at once
// (Config.Parallelism), answering each as it finishes.
type Client struct {
	cmd *exec.Cmd
	in  io.WriteCloser

	wmu sync.Mutex // one request written at a time
	enc *json.Encoder

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan Response
	err     error // set once the answers stopped: every later call fails with it
	done    bool
}

// Start runs bin and sends cfg. The child's stderr (its logs) goes to stderr.
func Start(ctx context.Context, bin string, cfg Config, stderr io.Writer) (*Client, error) {
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	c := &Client{cmd: cmd, in: in, enc: json.NewEncoder(in), pending: map[uint64]chan Response{}}
	dec := json.NewDecoder(out)
	if err := c.enc.Encode(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("configuring %s: %w", bin, err)
	}
	var ready Response
	if err := dec.Decode(&ready); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s did not start: %w", bin, err)
	}
	if ready.Error != "" {
		c.Close()
		return nil, fmt.Errorf("%s: %s", bin, ready.Error)
	}
	go c.read(dec)
	return c, nil
}

// read hands every answer to the call waiting for it.
func (c *Client) read(dec *json.Decoder) {
	for {
		var resp Response
		err := dec.Decode(&resp)
		c.mu.Lock()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.err = fmt.Errorf("the analyzer stopped answering: %w", err)
			for id, ch := range c.pending {
				delete(c.pending, id)
				close(ch)
			}
			c.mu.Unlock()
			return
		}
		ch, ok := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ok {
			ch <- resp
		}
	}
}

// Analyze sends one image and returns what to attach.
func (c *Client) Analyze(req Request) ([]referrers.Attachment, error) {
	ch := make(chan Response, 1)
	c.mu.Lock()
	if c.err != nil || c.done {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = errors.New("the analyzer is closed")
		}
		return nil, fmt.Errorf("analyzing %s: %w", req.Repository, err)
	}
	c.next++
	req.ID = c.next
	c.pending[req.ID] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	err := c.enc.Encode(req)
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		return nil, fmt.Errorf("sending %s to the analyzer: %w", req.Repository, err)
	}
	resp, ok := <-ch
	if !ok {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("analyzer answer for %s: %w", req.Repository, err)
	}
	switch {
	case resp.Threshold:
		return nil, fmt.Errorf("%w: %s", scanreport.ErrThreshold, strings.TrimPrefix(resp.Error, scanreport.ErrThreshold.Error()+": "))
	case resp.Error != "":
		return nil, errors.New(resp.Error)
	}
	return resp.Attachments, nil
}

// Close ends the analyzer process once the calls in flight are answered.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return nil
	}
	c.done = true
	c.mu.Unlock()
	c.wmu.Lock()
	c.in.Close()
	c.wmu.Unlock()
	err := c.cmd.Wait()
	return err
}

// Handler answers one request (the analyzer's side).
type Handler func(ctx context.Context, req Request) Response

// Serve is the analyzer's side of the protocol after the Config and the ready answer:
// it reads requests from dec until the client closes its end, runs up to parallelism
// (0: one per CPU) of them at once with h, and writes each answer, with the request's
// ID, as it finishes. It returns once every request is answered.
func Serve(ctx context.Context, dec *json.Decoder, enc *json.Encoder, parallelism int, h Handler) error {
	if parallelism <= 0 {
		parallelism = runtime.NumCPU()
	}
	sem := make(chan struct{}, parallelism)
	var (
		wg   sync.WaitGroup
		wmu  sync.Mutex
		werr error
	)
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			break // the parent closed stdin: done
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp := h(ctx, req)
			resp.ID = req.ID
			wmu.Lock()
			defer wmu.Unlock()
			if err := enc.Encode(resp); err != nil && werr == nil {
				werr = err
			}
		}()
	}
	wg.Wait()
	return werr
}
