package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
)

func dkimRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"dkim"}, args...), nil, &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

var dkimQuotedRE = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)

// dkimPublished reads the record from the command's output the way an
// operator's script (and the end-to-end suite) does: every double-quoted
// string, joined. It also checks the 255-byte limit of each string.
func dkimPublished(t *testing.T, out string) string {
	t.Helper()
	var parts []string
	for _, m := range dkimQuotedRE.FindAllStringSubmatch(out, -1) {
		if len(m[1]) > 255 {
			t.Errorf("a character-string of %d bytes", len(m[1]))
		}
		parts = append(parts, m[1])
	}
	if len(parts) == 0 {
		t.Fatalf("no quoted record in:\n%s", out)
	}
	return strings.Join(parts, "")
}

// dkimRecordKey returns the public key the p= tag of rec publishes.
func dkimRecordKey(t *testing.T, rec string) crypto.PublicKey {
	t.Helper()
	m := regexp.MustCompile(`^v=DKIM1; k=(rsa|ed25519); p=([A-Za-z0-9+/=]+)$`).FindStringSubmatch(rec)
	if m == nil {
		t.Fatalf("record %q", rec)
	}
	b, err := base64.StdEncoding.DecodeString(m[2])
	if err != nil {
		t.Fatal(err)
	}
	if m[1] == "ed25519" {
		if len(b) != ed25519.PublicKeySize {
			t.Fatalf("ed25519 p= of %d bytes", len(b))
		}
		return ed25519.PublicKey(b)
	}
	pub, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func dkimWritePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDKIMKeygen: for both algorithms, the key file is PKCS#8 with mode
// 0600 and loads as the relay loads keys; the printed record is the key's,
// split into strings of at most 255 bytes, also printed on one line; a
// message signed with the key verifies (go-msgauth) against the printed
// record; the printed configuration lines pass `sesrelay check`.
func TestDKIMKeygen(t *testing.T) {
	for _, tc := range []struct {
		alg, keyType, algTag string
		strings              int
	}{
		{"rsa2048", "*rsa.PrivateKey", "rsa-sha256", 2},
		{"ed25519", "ed25519.PrivateKey", "ed25519-sha256", 1},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dkim.pem")
			code, stdout, stderr := dkimRun(t, "keygen", "--domain", "Billing.Example.COM.", "--selector", "s2026", "--algorithm", tc.alg, "--out", out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			fi, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
			}
			raw, _ := os.ReadFile(out)
			if b, _ := pem.Decode(raw); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("not a PKCS#8 PEM key:\n%s", raw)
			}
			key, err := config.LoadPrivateKey(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := dkimTypeName(key); got != tc.keyType {
				t.Fatalf("key type %s, want %s", got, tc.keyType)
			}
			if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() != 2048 {
				t.Fatalf("RSA key of %d bits", k.N.BitLen())
			}

			want, _ := headers.DNSRecord(key.Public())
			if got := dkimPublished(t, stdout); got != want {
				t.Fatalf("published record\n%s\nwant\n%s", got, want)
			}
			if n := len(dkimQuotedRE.FindAllString(stdout, -1)); n != tc.strings {
				t.Errorf("%d character-strings, want %d", n, tc.strings)
			}
			for _, line := range []string{
				"s2026._domainkey.billing.example.com. IN TXT ",
				"\n" + want + "\n",
				"    dkim:\n      - domain: billing.example.com\n        selector: s2026\n        key_file: " + out + "\n",
			} {
				if !strings.Contains(stdout, line) {
					t.Errorf("output lacks %q:\n%s", line, stdout)
				}
			}

			// The record verifies what the key signs.
			msg, err := headers.Read([]byte("From: a@billing.example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"), headers.RejectBareNewlines)
			if err != nil {
				t.Fatal(err)
			}
			if err := headers.Sign(msg, headers.SignOptions{Domain: "billing.example.com", Selector: "s2026", Signer: key}); err != nil {
				t.Fatal(err)
			}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg.Bytes()), &dkim.VerifyOptions{
				LookupTXT: func(name string) ([]string, error) {
					if name != "s2026._domainkey.billing.example.com" {
						t.Errorf("lookup of %s", name)
					}
					return []string{dkimPublished(t, stdout)}, nil
				},
			})
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				t.Fatalf("verification with the printed record: %v %+v", err, vs)
			}
			if !strings.Contains(string(msg.Bytes()), "a="+tc.algTag) {
				t.Errorf("signature is not %s", tc.algTag)
			}

			// The configuration lines, under the development tenant
			// (example.com and its subdomains), pass `sesrelay check`.
			snippet := stdout[strings.Index(stdout, "    dkim:\n"):]
			dev, err := os.ReadFile("../../examples/dev.yaml")
			if err != nil {
				t.Fatal(err)
			}
			cfgFile := filepath.Join(t.TempDir(), "relay.yaml")
			if err := os.WriteFile(cfgFile, append(dev, snippet...), 0o600); err != nil {
				t.Fatal(err)
			}
			var co, ce bytes.Buffer
			if code := run(context.Background(), []string{"check", "--config", cfgFile}, nil, &co, &ce, nil); code != 0 {
				t.Fatalf("check with the printed dkim lines: exit %d: %s", code, ce.String())
			}
			if !strings.Contains(co.String(), "1 DKIM key(s)") {
				t.Errorf("check summary: %s", co.String())
			}
		})
	}
}

func dkimTypeName(v any) string {
	switch v.(type) {
	case *rsa.PrivateKey:
		return "*rsa.PrivateKey"
	case ed25519.PrivateKey:
		return "ed25519.PrivateKey"
	}
	return "other"
}

// TestDKIMRecordRoundTrip: `record` prints, for a key keygen made and for
// keys made elsewhere (PKCS#1 and PKCS#8 RSA, PKCS#8 Ed25519), a p= that
// is exactly the key's public key.
func TestDKIMRecordRoundTrip(t *testing.T) {
	out := filepath.Join(t.TempDir(), "kg.pem")
	code, kgOut, stderr := dkimRun(t, "keygen", "--domain", "billing.example.com", "--selector", "kg", "--out", out)
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	code, recOut, stderr := dkimRun(t, "record", "--key", out, "--domain", "billing.example.com", "--selector", "kg")
	if code != 0 {
		t.Fatalf("record: exit %d: %s", code, stderr)
	}
	if dkimPublished(t, recOut) != dkimPublished(t, kgOut) {
		t.Fatal("record prints another record than keygen did")
	}
	if !strings.Contains(recOut, "kg._domainkey.billing.example.com. IN TXT") || !strings.Contains(recOut, "key_file: "+out) {
		t.Errorf("record output:\n%s", recOut)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	for _, tc := range []struct {
		name string
		file string
		pub  crypto.PublicKey
	}{
		{"pkcs1 rsa", dkimWritePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey.Public()},
		{"pkcs8 rsa", dkimWritePEM(t, "PRIVATE KEY", pkcs8(rsaKey)), rsaKey.Public()},
		{"pkcs8 ed25519", dkimWritePEM(t, "PRIVATE KEY", pkcs8(edKey)), edKey.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without --domain and --selector: the value, no name, no
			// configuration lines.
			code, stdout, stderr := dkimRun(t, "record", "--key", tc.file)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			pub := dkimRecordKey(t, dkimPublished(t, stdout))
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.pub) {
				t.Fatal("p= is not the key's public key")
			}
			if strings.Contains(stdout, "dkim:") || strings.Contains(stdout, "._domainkey.") && !strings.Contains(stdout, "<selector>._domainkey.<domain>") {
				t.Errorf("output without --domain:\n%s", stdout)
			}
		})
	}
}

// TestDKIMRefusesShortRSA: an RSA key under 2048 bits is refused (exit 1)
// with a message that says so, in either PEM form.
func TestDKIMRefusesShortRSA(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der8, _ := x509.MarshalPKCS8PrivateKey(k)
	for _, file := range []string{
		dkimWritePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)),
		dkimWritePEM(t, "PRIVATE KEY", der8),
	} {
		code, stdout, stderr := dkimRun(t, "record", "--key", file, "--domain", "billing.example.com", "--selector", "old")
		if code != 1 {
			t.Fatalf("exit %d, want 1: %s%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "1024 bits") || !strings.Contains(stderr, "2048") || !strings.Contains(stderr, file) {
			t.Errorf("message %q does not name the file and the size", stderr)
		}
		if stdout != "" {
			t.Errorf("printed a record for a short key:\n%s", stdout)
		}
	}
}

// TestDKIMKeygenRefusesOverwrite: an existing file is kept (exit 1) unless
// --force, which replaces it with a 0600 key whatever the old mode.
func TestDKIMKeygenRefusesOverwrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(out, []byte("the key in use\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"keygen", "--domain", "billing.example.com", "--selector", "s2", "--algorithm", "ed25519", "--out", out}
	code, stdout, stderr := dkimRun(t, args...)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr, out+" already exists") || !strings.Contains(stderr, "--force") {
		t.Errorf("message %q", stderr)
	}
	if stdout != "" {
		t.Errorf("printed a record without a key:\n%s", stdout)
	}
	if b, _ := os.ReadFile(out); string(b) != "the key in use\n" {
		t.Fatalf("the existing file changed: %q", b)
	}

	code, stdout, stderr = dkimRun(t, append(args, "--force")...)
	if code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	fi, _ := os.Stat(out)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after --force, want 0600", fi.Mode().Perm())
	}
	key, err := config.LoadPrivateKey(out)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := headers.DNSRecord(key.Public())
	if dkimPublished(t, stdout) != want {
		t.Fatal("record is not the new key's")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestDKIMUsage: bad usage exits 2, a problem with a file exits 1; both
// say what is wrong, and a failed keygen leaves no file behind.
func TestDKIMUsage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "k.pem")
	notPEM := filepath.Join(dir, "notpem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage:"},
		{[]string{"rotate"}, 2, `unknown command "rotate"`},
		{[]string{"keygen", "--selector", "s", "--out", out}, 2, "--domain is required"},
		{[]string{"keygen", "--domain", "example.com", "--out", out}, 2, "--selector is required"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s"}, 2, "--out is required"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s", "--out", out, "--algorithm", "rsa1024"}, 2, `--algorithm "rsa1024"`},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s_1", "--out", out}, 2, "not a DKIM selector"},
		{[]string{"keygen", "--domain", "*.example.com", "--selector", "s", "--out", out}, 2, "wildcard"},
		{[]string{"keygen", "--domain", "localhost", "--selector", "s", "--out", out}, 2, "two labels"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s", "--out", out, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"keygen", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"record"}, 2, "--key is required"},
		{[]string{"record", "--key", out, "--domain", "example.com"}, 2, "both --domain and --selector"},
		{[]string{"keygen", "--domain", "example.com", "--selector", "s", "--out", filepath.Join(dir, "missing", "k.pem")}, 1, "no such file or directory"},
		{[]string{"record", "--key", filepath.Join(dir, "absent.pem")}, 1, "absent.pem"},
		{[]string{"record", "--key", notPEM}, 1, "no PEM block"},
	} {
		code, stdout, stderr := dkimRun(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q", tc.args, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused keygen left %s", out)
	}
	code, stdout, _ := dkimRun(t, "help")
	if code != 0 || !strings.Contains(stdout, "sesrelay dkim keygen") {
		t.Errorf("help: exit %d %q", code, stdout)
	}
}
