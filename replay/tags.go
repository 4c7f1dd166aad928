package replay

import (
	_ "crypto/sha256" // digest.Digest.Validate needs the hashes linked in
	_ "crypto/sha512"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

// Bundle identifies a verified bundle, from its signed metadata.
type Bundle struct {
	// ID is the series id: 32 lowercase hex digits.
	ID string
	// Sequence is the bundle's place in its series, from 1.
	Sequence uint64
	// Created is the signed creation time; it orders bundles of different series.
	Created time.Time
	// Metadata is the digest (sha256) of the bundle's petra/metadata.json bytes.
	Metadata digest.Digest
}

// TagMove is a destination tag an unpack is about to set.
type TagMove struct {
	// Ref is the full destination reference, host[:port]/repo:tag, spelled as the
	// unpack spells it: records are keyed by this exact string.
	Ref string
	// Digest is the manifest the tag will point to.
	Digest digest.Digest
}

// TagRecord is what the state remembers of a destination tag: the bundle that last set
// it, what it set it to, and when that was recorded.
type TagRecord struct {
	BundleID string        `json:"bundleID"`
	Sequence uint64        `json:"sequence"`
	Created  time.Time     `json:"created"`
	Metadata digest.Digest `json:"metadata"`
	Digest   digest.Digest `json:"digest"`
	Recorded time.Time     `json:"recorded"`
}

// CheckTags returns an error wrapping ErrRollback, naming each refused tag with the
// bundle that last set it and b, when a move would take a tag back to content from an
// older bundle than the one recorded for it. All refused tags are reported
// (errors.Join). A move is allowed when its tag has no record, when the record is b
// itself (same ID and sequence), or when b is not older than the recorded bundle and
// either sets the digest already recorded or is newer. Older means a lower sequence in
// the same series, an earlier Created in another series; another series created at the
// same instant that sets a different digest is refused too (fail closed). With
// Options.AllowRollback nothing is refused. An unreadable state is ErrState; invalid
// input (b, a Ref, a Digest, one Ref with two digests) is an error. It records nothing.
func (h *Held) CheckTags(b Bundle, moves []TagMove) error {
	moves, err := checkMoves(b, moves)
	if err != nil {
		return err
	}
	return h.withState(func(st *state) error { return h.s.checkTags(st, b, moves) })
}

// Record records, in one atomic write of the state file, that b was accepted and that
// it sets each tag of moves. It first checks again, as Accept and CheckTags do, the
// series sequence (ErrReplay) and every move (ErrRollback), and writes nothing when
// either refuses. The series' sequence is raised to b's, never lowered (an allowed
// replay keeps it); each tag's record becomes b with the move's digest, also under
// AllowRollback. Call it after pushing content and before moving the tags, so that a
// tag never moves without its record.
func (h *Held) Record(b Bundle, moves []TagMove) error {
	moves, err := checkMoves(b, moves)
	if err != nil {
		return err
	}
	return h.withState(func(st *state) error {
		changed, err := h.s.acceptSeries(st, b.ID, b.Sequence)
		if err != nil {
			return err
		}
		if err := h.s.checkTags(st, b, moves); err != nil {
			return err
		}
		recorded := h.s.now().UTC().Truncate(time.Second)
		for _, m := range moves {
			st.Tags[m.Ref] = &TagRecord{
				BundleID: b.ID,
				Sequence: b.Sequence,
				Created:  b.Created.UTC(),
				Metadata: b.Metadata,
				Digest:   m.Digest,
				Recorded: recorded,
			}
			changed = true
		}
		if !changed {
			return nil
		}
		return h.s.write(st)
	})
}

// Tag returns the record of the destination tag ref, and whether there is one.
func (h *Held) Tag(ref string) (TagRecord, bool, error) {
	if err := checkRef(ref); err != nil {
		return TagRecord{}, false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.held(); err != nil {
		return TagRecord{}, false, err
	}
	st, err := h.s.read()
	if err != nil {
		return TagRecord{}, false, err
	}
	r := st.Tags[ref]
	if r == nil {
		return TagRecord{}, false, nil
	}
	return *r, true, nil
}

// checkTags is CheckTags on the state st, for valid input.
func (s *Store) checkTags(st *state, b Bundle, moves []TagMove) error {
	if s.allowRollback {
		return nil
	}
	var errs []error
	for _, m := range moves {
		r := st.Tags[m.Ref]
		if r == nil {
			continue
		}
		if why := rollback(r, b, m.Digest); why != "" {
			errs = append(errs, fmt.Errorf("%w: %s holds %s set by bundle %s sequence %d created %s; bundle %s sequence %d created %s would set %s: %s",
				ErrRollback, m.Ref, r.Digest, r.BundleID, r.Sequence, stamp(r.Created),
				b.ID, b.Sequence, stamp(b.Created), m.Digest, why))
		}
	}
	return errors.Join(errs...)
}

// rollback says why setting r's tag to d for b would roll it back, or "" when it would
// not.
func rollback(r *TagRecord, b Bundle, d digest.Digest) string {
	if r.BundleID == b.ID {
		if b.Sequence < r.Sequence {
			return "an older sequence of the same series"
		}
		return "" // the same bundle, or a newer one of its series
	}
	switch c := b.Created.Compare(r.Created); {
	case c < 0:
		return "another series, created earlier"
	case c == 0 && d != r.Digest:
		return "another series created at the same instant, with other content"
	}
	return ""
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// checkMoves validates b and moves, and returns moves without repeats. One Ref with two
// digests is an error.
func checkMoves(b Bundle, moves []TagMove) ([]TagMove, error) {
	if err := checkID(b.ID); err != nil {
		return nil, err
	}
	if b.Sequence == 0 {
		return nil, fmt.Errorf("bundle %s: sequence 0", b.ID)
	}
	if b.Created.IsZero() {
		return nil, fmt.Errorf("bundle %s sequence %d: no creation time", b.ID, b.Sequence)
	}
	if err := b.Metadata.Validate(); err != nil {
		return nil, fmt.Errorf("bundle %s sequence %d: metadata digest %q: %w", b.ID, b.Sequence, b.Metadata, err)
	}
	seen := make(map[string]digest.Digest, len(moves))
	out := make([]TagMove, 0, len(moves))
	for _, m := range moves {
		if err := checkRef(m.Ref); err != nil {
			return nil, err
		}
		if err := m.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("tag %s: digest %q: %w", m.Ref, m.Digest, err)
		}
		if d, ok := seen[m.Ref]; ok {
			if d != m.Digest {
				return nil, fmt.Errorf("tag %s would be set to both %s and %s", m.Ref, d, m.Digest)
			}
			continue
		}
		seen[m.Ref] = m.Digest
		out = append(out, m)
	}
	return out, nil
}

// checkRef refuses an empty reference, or one with whitespace, control characters or
// invalid UTF-8.
func checkRef(ref string) error {
	if ref == "" {
		return errors.New("empty tag reference")
	}
	if !utf8.ValidString(ref) {
		return fmt.Errorf("tag reference %q is not UTF-8", ref)
	}
	for _, c := range ref {
		if unicode.IsSpace(c) || unicode.IsControl(c) {
			return fmt.Errorf("tag reference %q has whitespace or control characters", ref)
		}
	}
	return nil
}

// checkTagRecord validates a record read from the state file.
func checkTagRecord(ref string, r *TagRecord) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	switch {
	case r == nil:
		return errors.New("null")
	case checkID(r.BundleID) != nil:
		return fmt.Errorf("bundle id %q", r.BundleID)
	case r.Sequence == 0:
		return errors.New("sequence 0")
	case r.Created.IsZero():
		return errors.New("no creation time")
	case r.Metadata.Validate() != nil:
		return fmt.Errorf("metadata digest %q", r.Metadata)
	case r.Digest.Validate() != nil:
		return fmt.Errorf("digest %q", r.Digest)
	case r.Recorded.IsZero():
		return errors.New("no record time")
	}
	return nil
}
