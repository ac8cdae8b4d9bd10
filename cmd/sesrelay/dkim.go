package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sesrelay/sesrelay/address"
	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
)

// `sesrelay dkim keygen` and `sesrelay dkim record`: make a tenant's DKIM
// key and print the DNS TXT record (RFC 6376 3.6.1, RFC 8463 for Ed25519)
// and the configuration lines that go with it.
//
// The output has double quotes only around the record's character-strings
// in the zone-file line, so that a script can take every quoted string in
// it and join them into the record (the end-to-end suite does exactly that).

const dkimUsage = `usage:
  sesrelay dkim keygen --domain D --selector S [--algorithm rsa2048|ed25519] --out FILE [--force]
      write a new private key (PKCS#8 PEM, mode 0600) and print its DNS record
  sesrelay dkim record --key FILE [--domain D --selector S]
      print the DNS record of an existing key (PKCS#1 or PKCS#8 RSA of at
      least 2048 bits, or PKCS#8 Ed25519)
`

// dkimSelectorPattern is the selector syntax the configuration accepts
// (config.Validate): dot-separated labels of letters, digits and hyphens.
var dkimSelectorPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func cmdDKIM(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dkimUsage)
		return 2
	}
	switch args[0] {
	case "keygen":
		return cmdDKIMKeygen(args[1:], stdout, stderr)
	case "record":
		return cmdDKIMRecord(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, dkimUsage)
		return 0
	}
	fmt.Fprintf(stderr, "sesrelay dkim: unknown command %q\n\n%s", args[0], dkimUsage)
	return 2
}

// dkimUsageError reports bad usage (exit 2).
func dkimUsageError(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "sesrelay dkim %s: %s\n\n%s", cmd, fmt.Sprintf(format, args...), dkimUsage)
	return 2
}

// dkimParseFlags parses fs and maps the outcome to an exit code: -1 to go on,
// 0 after -h, 2 on bad usage (the flag package has printed why).
func dkimParseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		return dkimUsageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	return -1
}

// dkimKeyName checks domain and selector and returns the normalized domain.
func dkimKeyName(cmd, domain, selector string, stderr io.Writer) (string, int) {
	d, err := address.Pattern(domain)
	if err != nil {
		return "", dkimUsageError(stderr, cmd, "--domain: %v", err)
	}
	if strings.HasPrefix(d, "*.") {
		return "", dkimUsageError(stderr, cmd, "--domain %q: a key belongs to one domain, not a wildcard", domain)
	}
	if !dkimSelectorPattern.MatchString(selector) {
		return "", dkimUsageError(stderr, cmd, "--selector %q is not a DKIM selector (letters, digits, hyphens; labels separated by dots)", selector)
	}
	return d, -1
}

func cmdDKIMKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing domain (the d= tag); the From domain or a parent of it")
	selector := fs.String("selector", "", "selector (the s= tag), e.g. s2026")
	algorithm := fs.String("algorithm", "rsa2048", "rsa2048 or ed25519")
	out := fs.String("out", "", "file to write the private key to (mode 0600)")
	force := fs.Bool("force", false, "replace FILE if it exists")
	if code := dkimParseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	switch {
	case *domain == "":
		return dkimUsageError(stderr, "keygen", "--domain is required")
	case *selector == "":
		return dkimUsageError(stderr, "keygen", "--selector is required")
	case *out == "":
		return dkimUsageError(stderr, "keygen", "--out is required")
	}
	d, code := dkimKeyName("keygen", *domain, *selector, stderr)
	if code >= 0 {
		return code
	}

	var key crypto.Signer
	var err error
	switch *algorithm {
	case "rsa2048":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return dkimUsageError(stderr, "keygen", "--algorithm %q: want rsa2048 or ed25519", *algorithm)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim keygen: generating the key: %v\n", err)
		return 1
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim keygen: encoding the key: %v\n", err)
		return 1
	}
	if err := dkimWriteKeyFile(*out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), *force); err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim keygen: %v\n", err)
		return 1
	}
	// Read it back the way the relay will, so that what is printed is the
	// record of the file as the relay loads it.
	loaded, err := config.LoadPrivateKey(*out)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim keygen: %s was written but does not load: %v\n", *out, err)
		return 1
	}
	fmt.Fprintf(stdout, "Wrote a new %s private key to %s (mode 0600). Keep it secret.\n\n", dkimDescribeKey(loaded), *out)
	return dkimPrintRecord(stdout, stderr, "keygen", loaded, d, *selector, *out)
}

func cmdDKIMRecord(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "private key file (PEM: PKCS#1 or PKCS#8 RSA, PKCS#8 Ed25519)")
	domain := fs.String("domain", "", "signing domain (the d= tag), to print the full record name")
	selector := fs.String("selector", "", "selector (the s= tag), to print the full record name")
	if code := dkimParseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if *keyFile == "" {
		return dkimUsageError(stderr, "record", "--key is required")
	}
	if (*domain == "") != (*selector == "") {
		return dkimUsageError(stderr, "record", "give both --domain and --selector, or neither")
	}
	d := ""
	if *domain != "" {
		var code int
		if d, code = dkimKeyName("record", *domain, *selector, stderr); code >= 0 {
			return code
		}
	}
	key, err := config.LoadPrivateKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim record: %s: %v\n", *keyFile, err)
		return 1
	}
	fmt.Fprintf(stdout, "Key %s: %s.\n\n", *keyFile, dkimDescribeKey(key))
	return dkimPrintRecord(stdout, stderr, "record", key, d, *selector, *keyFile)
}

// dkimWriteKeyFile writes pemBytes to file with mode 0600. Without force an
// existing file is an error (O_EXCL: no window in which another process's
// file is replaced); with force the key goes to a temporary file in the
// same directory first and is renamed over file, so that file is never a
// half-written key.
func dkimWriteKeyFile(file string, pemBytes []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite a key (a key in use must stay until its DNS record is gone; pass --force to replace it)", file)
		}
		if err != nil {
			return err
		}
		return dkimFinishKeyFile(f, file, pemBytes)
	}
	if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", file)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return err
	}
	if err := dkimFinishKeyFile(tmp, tmp.Name(), pemBytes); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// dkimFinishKeyFile writes, syncs and closes f (at path), forces mode 0600
// whatever the umask, and removes the file on any error.
func dkimFinishKeyFile(f *os.File, path string, pemBytes []byte) error {
	_, err := f.Write(pemBytes)
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func dkimDescribeKey(k crypto.Signer) string {
	switch p := k.Public().(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit (rsa-sha256)", p.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519 (ed25519-sha256)"
	}
	return fmt.Sprintf("%T", k)
}

// dkimPrintRecord prints the TXT record of key: in zone-file syntax (the value
// split into quoted character-strings of at most 255 bytes), on one line
// for consoles that take the value as it is, and, when domain is known,
// the tenants[].dkim entry. domain == "" prints the value without a name.
func dkimPrintRecord(stdout, stderr io.Writer, cmd string, key crypto.Signer, domain, selector, keyFile string) int {
	value, err := headers.DNSRecord(key.Public())
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay dkim %s: %v\n", cmd, err)
		return 1
	}
	parts := headers.SplitTXT(value)
	quoted := make([]string, len(parts))
	for i, p := range parts {
		// A key record holds no quote or backslash; escape anyway so the
		// line stays valid zone-file syntax whatever the value.
		quoted[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
	}

	name := "<selector>._domainkey.<domain>"
	if domain != "" {
		name = selector + "._domainkey." + domain
	}
	fmt.Fprintf(stdout, "DNS TXT record to publish at %s (%d character-string(s) of at most 255 bytes; resolvers join them without a separator):\n\n", name, len(parts))
	owner := "" // without a domain the line has no owner name
	if domain != "" {
		owner = name + ". "
	}
	if len(quoted) == 1 {
		fmt.Fprintf(stdout, "%sIN TXT %s\n\n", owner, quoted[0])
	} else {
		fmt.Fprintf(stdout, "%sIN TXT (\n\t%s )\n\n", owner, strings.Join(quoted, "\n\t"))
	}
	fmt.Fprintf(stdout, "The same value on one line, for DNS consoles that split it themselves:\n\n%s\n", value)
	if domain == "" {
		return 0
	}
	abs, err := filepath.Abs(keyFile)
	if err != nil {
		abs = keyFile
	}
	fmt.Fprintf(stdout, "\nConfiguration (under the tenant that owns %s; a relative key_file is read from the relay's working directory):\n\n", domain)
	fmt.Fprintf(stdout, "    dkim:\n      - domain: %s\n        selector: %s\n        key_file: %s\n", domain, selector, dkimYAMLScalar(abs))
	return 0
}

// dkimYAMLScalar returns s as a YAML scalar: plain when that is safe, else
// single-quoted (never double quotes: see the comment at the top).
func dkimYAMLScalar(s string) string {
	plain := s != "" && !strings.ContainsAny(s, ":#'\"{}[],&*!|>%@`\t\n") && s == strings.TrimSpace(s) && !strings.HasPrefix(s, "-") && !strings.HasPrefix(s, "?")
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
