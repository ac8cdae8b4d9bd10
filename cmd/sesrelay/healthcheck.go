package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sesrelay/sesrelay/config"
)

// defaultAdminAddress is where healthcheck looks without --address or
// --config: the admin port the image and the chart use.
const defaultAdminAddress = "127.0.0.1:9090"

// cmdHealthcheck GETs a path of the admin listener and exits 0 on 200, 1
// on anything else (including no answer within --timeout). It exists for
// container health checks: the distroless image has no shell, curl or wget.
func cmdHealthcheck(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file whose admin.address to probe")
	address := fs.String("address", "", "admin listener HOST:PORT (default: admin.address of --config, else "+defaultAdminAddress+")")
	path := fs.String("path", "/healthz", "path to GET (/healthz, /readyz)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *timeout <= 0 || !strings.HasPrefix(*path, "/") {
		fmt.Fprintln(stderr, "usage: sesrelay healthcheck [--config FILE] [--address HOST:PORT] [--path /healthz] [--timeout 2s]")
		return 2
	}
	target := *address
	if target == "" {
		target = defaultAdminAddress
		if *cfgPath != "" {
			a, err := adminAddressOf(*cfgPath)
			if err != nil {
				fmt.Fprintf(stderr, "sesrelay healthcheck: %v\n", err)
				return 1
			}
			if a == "" {
				fmt.Fprintf(stderr, "sesrelay healthcheck: %s: admin.address is empty, the admin listener is off\n", *cfgPath)
				return 1
			}
			target = a
		}
	}
	url := "http://" + dialAddress(target) + *path
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay healthcheck: %v\n", err)
		return 2
	}
	client := &http.Client{
		// No proxy from the environment: the admin listener is local.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		// A redirect is not health.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sesrelay healthcheck: GET %s: %s: %s\n", url, resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(stdout, "GET %s: %s\n", url, resp.Status)
	return 0
}

// adminAddressOf reads admin.address from the configuration file at path,
// with the SESRELAY_ADMIN_ADDRESS override the relay itself applies. It
// reads that key only, without validating the rest: a health check must
// not fail because a DKIM key file is unreadable to it, or a reload is
// half written.
func adminAddressOf(path string) (string, error) {
	if v, ok := os.LookupEnv(config.EnvPrefix + "_ADMIN_ADDRESS"); ok {
		return v, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var f struct {
		Admin struct {
			Address string `yaml:"address"`
		} `yaml:"admin"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return f.Admin.Address, nil
}

// dialAddress turns a listen address into one to connect to: an
// unspecified host (":9090", "0.0.0.0:9090", "[::]:9090") means loopback.
func dialAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch {
	case host == "" || host == "0.0.0.0":
		host = "127.0.0.1"
	case host == "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
