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
}

// Request is one image to analyze, once it is in the bundle (Config.Dir). It is the
// one analysis request: pack builds it (pack.Options.Analyze), the client sends it,
// and internal/analyze reads it on the other side.
type Request struct {
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

// Client talks to one analyzer process; calls are serialised.
type Client struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	enc  *json.Encoder
	dec  *json.Decoder
	done bool
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
	c := &Client{cmd: cmd, in: in, enc: json.NewEncoder(in), dec: json.NewDecoder(out)}
	if err := c.enc.Encode(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("configuring %s: %w", bin, err)
	}
	var ready Response
	if err := c.dec.Decode(&ready); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s did not start: %w", bin, err)
	}
	if ready.Error != "" {
		c.Close()
		return nil, fmt.Errorf("%s: %s", bin, ready.Error)
	}
	return c, nil
}

// Analyze sends one image and returns what to attach.
func (c *Client) Analyze(req Request) ([]referrers.Attachment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enc.Encode(req); err != nil {
		return nil, fmt.Errorf("sending %s to the analyzer: %w", req.Repository, err)
	}
	var resp Response
	if err := c.dec.Decode(&resp); err != nil {
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

// Close ends the analyzer process.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	c.in.Close()
	return c.cmd.Wait()
}
