package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the resume state in an import's work directory (never in the bundle).
const stateFile = "state.json"

const stateVersion = 1

// state is what an interrupted import had done: which chunks verified (so they are not
// read again), which it rebuilt, and how far extraction got (the tar offset of the next
// entry and every file extracted before it).
type state struct {
	Version int `json:"version"`
	// Source names what is imported (the chunk index digest, or the archive's path,
	// size and time); another source starts over.
	Source   string                   `json:"source"`
	Verified map[string]verifiedChunk `json:"verified,omitempty"`
	Rebuilt  map[string]string        `json:"rebuilt,omitempty"`
	Offset   int64                    `json:"offset"`
	Done     []string                 `json:"done,omitempty"`
}

// verifiedChunk is a chunk file that hashed right, as it was then.
type verifiedChunk struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtimeNs"`
	SHA256  string `json:"sha256"`
}

// loadState reads the state of work, or returns a fresh one when there is none or it
// is about another source (the work directory is then emptied).
func loadState(work, source string) (st *state, resumed bool, err error) {
	fresh := &state{Version: stateVersion, Source: source, Verified: map[string]verifiedChunk{}, Rebuilt: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(work, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, false, fmt.Errorf("reading the import state: %w", err)
	default:
		var s state
		if json.Unmarshal(b, &s) == nil && s.Version == stateVersion && s.Source == source {
			if s.Verified == nil {
				s.Verified = map[string]verifiedChunk{}
			}
			if s.Rebuilt == nil {
				s.Rebuilt = map[string]string{}
			}
			return &s, true, nil
		}
	}
	// no usable state: whatever is in work is not trusted
	if err := os.RemoveAll(work); err != nil {
		return nil, false, fmt.Errorf("removing the stale import work directory %s: %w", work, err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating the import work directory: %w", err)
	}
	return fresh, false, nil
}

// saveState writes st atomically.
func saveState(work string, st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(work, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing the import state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(work, stateFile)); err != nil {
		return fmt.Errorf("writing the import state: %w", err)
	}
	return nil
}
