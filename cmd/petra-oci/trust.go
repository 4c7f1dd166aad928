package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
)

// signFlags are the flags of commands that sign a bundle.
func signFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "sign the bundle with this cosign private key `FILE` (password from $COSIGN_PASSWORD) or KMS reference (hashivault://, awskms://, gcpkms://, azurekms://)"},
	}
}

func loadSigner(c *cli.Context) (signing.Signer, error) {
	ref := c.String("key")
	if ref == "" {
		return nil, nil
	}
	return loadSignerRef(c.Context, ref)
}

// loadSignerInBackground is loadSigner for a command that signs only after its main
// work (export): the key file is read and its password asked for at once, its
// decryption runs beside the work (signing.LoadSignerInBackground).
func loadSignerInBackground(c *cli.Context) (signing.Signer, error) {
	ref := c.String("key")
	if ref == "" {
		return nil, nil
	}
	return cachedSigner(ref, func() (signing.Signer, error) {
		return signing.LoadSignerInBackground(c.Context, ref, signing.PasswordFromEnv)
	})
}

// signers holds the keys this process has loaded, by reference: a command that signs
// with a key and checkpoints its audit entry with the same key (pack's and sign's
// --key, unpack's --attest-key) decrypts it once.
var signers struct {
	sync.Mutex
	byRef map[string]signing.Signer
}

// loadSignerRef loads the private key ref (signing.LoadSigner, password from
// $COSIGN_PASSWORD) once per process: a cosign key file's scrypt KDF is paid once, and
// the audit checkpoint signs with the same key.
func loadSignerRef(ctx context.Context, ref string) (signing.Signer, error) {
	return cachedSigner(ref, func() (signing.Signer, error) {
		return signing.LoadSigner(ctx, ref, signing.PasswordFromEnv)
	})
}

// cachedSigner returns the key loaded for ref before, or loads it and keeps it.
func cachedSigner(ref string, load func() (signing.Signer, error)) (signing.Signer, error) {
	signers.Lock()
	defer signers.Unlock()
	if s, ok := signers.byRef[ref]; ok {
		return s, nil
	}
	s, err := load()
	if err != nil {
		return nil, err
	}
	if signers.byRef == nil {
		signers.byRef = map[string]signing.Signer{}
	}
	signers.byRef[ref] = s
	return s, nil
}

// verifyFlags are the flags of commands that verify a signature: cosign's vocabulary.
func verifyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key", Usage: "public key `FILE` (PEM, cosign.pub) the signature must verify with"},
		&cli.StringFlag{Name: "certificate-identity", Usage: "keyless: the exact signer `IDENTITY` (certificate SAN)"},
		&cli.StringFlag{Name: "certificate-identity-regexp", Usage: "keyless: an anchored `REGEXP` (^...$) the signer identity must match"},
		&cli.StringFlag{Name: "certificate-oidc-issuer", Usage: "keyless: the exact OIDC `ISSUER` of the signer's certificate"},
		&cli.StringFlag{Name: "certificate-oidc-issuer-regexp", Usage: "keyless: an anchored `REGEXP` the OIDC issuer must match"},
		&cli.StringFlag{Name: "trusted-root", Usage: "Sigstore trusted_root.json `FILE` (Fulcio, Rekor, CT logs, TSAs) for keyless signatures of the bundle and of images; nothing is fetched"},
	}
}

// signatureOptions reads the verify flags. Exactly one mode: --key, or keyless flags
// with --trusted-root.
func signatureOptions(c *cli.Context) (signing.VerifyOptions, error) {
	var o signing.VerifyOptions
	if k := c.String("key"); k != "" {
		b, err := os.ReadFile(k)
		if err != nil {
			return o, fmt.Errorf("reading public key: %w", err)
		}
		o.PublicKey = b
	}
	if r := c.String("trusted-root"); r != "" {
		b, err := os.ReadFile(r)
		if err != nil {
			return o, fmt.Errorf("reading trusted root: %w", err)
		}
		o.TrustedRoot = b
	}
	o.CertificateIdentity = c.String("certificate-identity")
	o.CertificateIdentityRegexp = c.String("certificate-identity-regexp")
	o.CertificateOIDCIssuer = c.String("certificate-oidc-issuer")
	o.CertificateOIDCIssuerRegexp = c.String("certificate-oidc-issuer-regexp")
	// --trusted-root also serves keyless image signatures, so it alone is no keyless mode
	keyless := o.CertificateIdentity != "" || o.CertificateIdentityRegexp != "" ||
		o.CertificateOIDCIssuer != "" || o.CertificateOIDCIssuerRegexp != ""
	if !keyless {
		o.TrustedRoot = nil
	}
	switch {
	case o.PublicKey != nil && keyless:
		return o, cli.Exit("give either --key or the keyless flags (--certificate-identity[-regexp], --certificate-oidc-issuer[-regexp]), not both", exitUsage)
	case o.PublicKey == nil && !keyless:
		return o, cli.Exit("say who must have signed: --key cosign.pub, or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp] and --trusted-root", exitUsage)
	case keyless && c.String("trusted-root") == "":
		return o, cli.Exit("keyless verification needs --trusted-root (nothing is fetched)", exitUsage)
	}
	return o, nil
}

// replayFlags configure the record of accepted bundle sequences, and the pinned image
// policy verify and unpack enforce again.
func replayFlags() []cli.Flag {
	return append(policyFlags(),
		&cli.StringFlag{Name: "state", Usage: "`FILE` recording the last accepted sequence of each bundle series (default: $XDG_STATE_HOME/petra-oci/series.json)"},
		&cli.BoolFlag{Name: "allow-replay", Usage: "accept a bundle whose sequence is not newer than the last accepted one (rollback / replay)"},
	)
}

// bundleVerifyOptions builds what bundle.Verify needs from the flags.
func bundleVerifyOptions(c *cli.Context) (*bundle.VerifyOptions, error) {
	sig, err := signatureOptions(c)
	if err != nil {
		return nil, err
	}
	if c.Bool("allow-replay") {
		logger(c).Warn("--allow-replay: an older or repeated bundle of a series will be accepted")
	}
	if c.Bool("allow-rollback") {
		logger(c).Warn("--allow-rollback: tags may move back to content from an older bundle")
	}
	guard, err := replay.New(replay.Options{Path: c.String("state"), AllowReplay: c.Bool("allow-replay"), AllowRollback: c.Bool("allow-rollback"),
		OnWait: func() {
			logger(c).Info("waiting for the replay state, held by another unpack", "state", c.String("state"))
		}})
	if err != nil {
		return nil, err
	}
	images, err := imagePolicy(c, false)
	if err != nil {
		return nil, err
	}
	return &bundle.VerifyOptions{Signature: sig, Replay: guard, Images: images}, nil
}
