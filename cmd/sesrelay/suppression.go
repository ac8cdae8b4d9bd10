package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression"
)

// `sesrelay suppression list|add|remove|import|export`: the operator's view
// of the suppression store the configuration names (docs/unsubscribe.md).
// Every command acts on one tenant, named by --tenant; an import file has
// no tenant column, so a file can never write into another tenant.

const suppressionUsage = `usage:
  sesrelay suppression list   --config F --tenant T [--list L]
      print the tenant's suppressed recipients (of one list with --list)
  sesrelay suppression add    --config F --tenant T --list L [--source S] RECIPIENT...
      suppress recipients for the list (source: admin unless given)
  sesrelay suppression remove --config F --tenant T --list L RECIPIENT...
      lift suppressions; an absent one is not an error
  sesrelay suppression import --config F --tenant T [--list L] [--source S] [--file CSV]
      add every row of a CSV file (stdin without --file): a header naming the
      columns list, recipient, created, source (recipient required; list
      unless --list is given); or one address per line with --list.
      The whole file is checked before anything is written.
  sesrelay suppression export --config F --tenant T [--list L] [--file CSV]
      write the entries as CSV (list,recipient,created,source), to stdout
      without --file; import reads it back
`

// csvHeader is what export writes and import recognises.
var csvHeader = []string{"list", "recipient", "created", "source"}

// importBatch is how many entries import writes per AddMany.
const importBatch = 1000

func cmdSuppression(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, suppressionUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list", "add", "remove", "import", "export":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, suppressionUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sesrelay suppression: unknown command %q\n\n%s", sub, suppressionUsage)
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sesrelay suppression %s: %s\n\n%s", sub, fmt.Sprintf(format, a...), suppressionUsage)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "sesrelay suppression %s: %s\n", sub, fmt.Sprintf(format, a...))
		return 1
	}

	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	tenant := fs.String("tenant", "", "tenant name (tenants[].name)")
	list := fs.String("list", "", "list identifier")
	source := new(string)
	file := new(string)
	if sub == "add" || sub == "import" {
		def := suppression.SourceAdmin
		if sub == "import" {
			def = suppression.SourceImport
		}
		source = fs.String("source", def, "source recorded with each entry")
	}
	if sub == "import" || sub == "export" {
		file = fs.String("file", "", "CSV file (default: standard input / output)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rcpts := fs.Args()
	switch {
	case *tenant == "":
		return usageErr("--tenant is required")
	case (sub == "add" || sub == "remove") && *list == "":
		return usageErr("--list is required")
	case (sub == "add" || sub == "remove") && len(rcpts) == 0:
		return usageErr("give at least one recipient")
	case sub != "add" && sub != "remove" && len(rcpts) > 0:
		return usageErr("unexpected argument %q", rcpts[0])
	}

	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	// Entries of a tenant no longer configured can still be listed,
	// exported and removed; only new ones need a configured tenant.
	if (sub == "add" || sub == "import") && cfg.TenantByName(*tenant) == nil {
		return fail("--tenant %q: no such tenant in the configuration", *tenant)
	}

	// Validate the input before opening the store: a bad line writes nothing.
	var entries []suppression.Entry
	switch sub {
	case "add":
		for _, r := range rcpts {
			e, err := suppression.Check(suppression.Entry{Tenant: *tenant, List: *list, Recipient: r, Source: *source})
			if err != nil {
				return fail("%v", err)
			}
			entries = append(entries, e)
		}
	case "remove":
		for _, r := range rcpts {
			e, err := suppression.Check(suppression.Entry{Tenant: *tenant, List: *list, Recipient: r})
			if err != nil {
				return fail("%v", err)
			}
			entries = append(entries, e)
		}
	case "import":
		in := stdin
		name := "standard input"
		if *file != "" && *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return fail("%v", err)
			}
			defer f.Close()
			in, name = f, *file
		}
		if entries, err = readImport(in, *tenant, *list, *source); err != nil {
			return fail("%s: %v", name, err)
		}
	}

	store, err := suppression.Open(ctx, cfg.Suppression, suppression.Options{DefaultRegion: cfg.SES.Region})
	if err != nil {
		return fail("%v", err)
	}
	defer store.Close()

	switch sub {
	case "add":
		for _, e := range entries {
			if err := store.Add(ctx, e); err != nil {
				return fail("%v", err)
			}
		}
		fmt.Fprintf(stdout, "suppressed %d recipient(s) for tenant %s, list %s\n", len(entries), *tenant, *list)
	case "remove":
		for _, e := range entries {
			if err := store.Remove(ctx, e.Tenant, e.List, e.Recipient); err != nil {
				return fail("%v", err)
			}
		}
		fmt.Fprintf(stdout, "removed %d recipient(s) from the suppression of tenant %s, list %s\n", len(entries), *tenant, *list)
	case "import":
		b := store.(suppression.Batcher)
		for i := 0; i < len(entries); i += importBatch {
			if err := b.AddMany(ctx, entries[i:min(i+importBatch, len(entries))]); err != nil {
				return fail("after %d of %d entries: %v (importing the file again is harmless)", i, len(entries), err)
			}
		}
		fmt.Fprintf(stderr, "imported %d entries for tenant %s (existing entries kept as they were)\n", len(entries), *tenant)
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LIST\tRECIPIENT\tCREATED\tSOURCE")
		n := 0
		err := store.List(ctx, *tenant, *list, func(e suppression.Entry) error {
			n++
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.List, e.Recipient, e.Created.UTC().Format(time.RFC3339), e.Source)
			return err
		})
		tw.Flush()
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stdout, "%d entries\n", n)
	case "export":
		out := stdout
		var f *os.File
		if *file != "" && *file != "-" {
			if f, err = os.OpenFile(*file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
				return fail("%v", err)
			}
			out = f
		}
		w := csv.NewWriter(out)
		w.Write(csvHeader)
		n := 0
		err := store.List(ctx, *tenant, *list, func(e suppression.Entry) error {
			n++
			return w.Write([]string{e.List, e.Recipient, e.Created.UTC().Format(time.RFC3339Nano), e.Source})
		})
		w.Flush()
		if err == nil {
			err = w.Error()
		}
		if f != nil {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stderr, "exported %d entries of tenant %s\n", n, *tenant)
	}
	return 0
}

// readImport reads an import file into checked entries of tenant. Errors
// name the line.
func readImport(in io.Reader, tenant, list, source string) ([]suppression.Entry, error) {
	r := csv.NewReader(in)
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	r.ReuseRecord = false
	first, err := r.Read()
	if err == io.EOF {
		return nil, errors.New("empty file")
	}
	if err != nil {
		return nil, err
	}
	col := map[string]int{}
	for i, h := range first {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		col[h] = i
	}
	var records [][]string
	if _, ok := col["recipient"]; !ok {
		// No header: one address per line, for the list --list names.
		if len(first) != 1 || !strings.Contains(first[0], "@") {
			return nil, errors.New(`line 1: want a header naming the columns (recipient, and list unless --list is given), or one address per line`)
		}
		if list == "" {
			return nil, errors.New("a file of bare addresses needs --list")
		}
		col = map[string]int{"recipient": 0}
		records = append(records, first)
	} else {
		for h := range col {
			switch h {
			case "list", "recipient", "created", "source", "tenant":
			default:
				return nil, fmt.Errorf("line 1: unknown column %q (want %s)", h, strings.Join(csvHeader, ", "))
			}
		}
		if _, ok := col["tenant"]; ok {
			return nil, errors.New(`line 1: a tenant column is not accepted: the tenant is --tenant, so a file cannot write into another tenant`)
		}
		if _, ok := col["list"]; !ok && list == "" {
			return nil, errors.New("line 1: no list column: give one or --list")
		}
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var out []suppression.Entry
	for {
		rec := first
		if len(records) > 0 {
			rec, records = records[0], records[1:]
		} else if rec, err = r.Read(); err == io.EOF {
			break
		} else if err != nil {
			return nil, err // csv.ParseError names the line
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		e := suppression.Entry{Tenant: tenant, List: field(rec, "list"), Recipient: field(rec, "recipient"), Source: field(rec, "source")}
		if list != "" {
			if e.List != "" && e.List != list {
				return nil, fmt.Errorf("line %d: list %q, but --list is %q", line, e.List, list)
			}
			e.List = list
		}
		if e.Source == "" {
			e.Source = source
		}
		if c := field(rec, "created"); c != "" {
			t, err := time.Parse(time.RFC3339Nano, c)
			if err != nil {
				return nil, fmt.Errorf("line %d: created %q is not an RFC 3339 time like 2026-03-01T12:00:00Z", line, c)
			}
			e.Created = t
		}
		e, err := suppression.Check(e)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		out = append(out, e)
	}
	return out, nil
}
