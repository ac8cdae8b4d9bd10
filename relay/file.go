package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FileSender writes each request as DIR/ID.eml (the raw message) and
// DIR/ID.json (everything else SES would receive). For development and
// local testing: it answers like SES, after both files are on disk.
type FileSender struct {
	Dir   string
	NewID func() string
	Now   func() time.Time
}

var _ Sender = (*FileSender)(nil)

type fileRecord struct {
	MessageID        string    `json:"message_id"`
	Time             time.Time `json:"time"`
	Tenant           string    `json:"tenant"`
	Region           string    `json:"region,omitempty"`
	EnvelopeFrom     string    `json:"envelope_from"`
	Recipients       []string  `json:"recipients"`
	ConfigurationSet string    `json:"configuration_set,omitempty"`
	Tags             []Tag     `json:"tags,omitempty"`
	IdentityARN      string    `json:"identity_arn,omitempty"`
	SESTenant        string    `json:"ses_tenant,omitempty"`
	EndpointID       string    `json:"endpoint_id,omitempty"`
	DisableTracking  bool      `json:"disable_tracking,omitempty"`
	Size             int       `json:"size"`
}

// Send writes the two files (fsynced, renamed into place).
func (f *FileSender) Send(_ context.Context, req *Request) (*Result, error) {
	if err := os.MkdirAll(f.Dir, 0o750); err != nil {
		return nil, &SendError{Kind: KindMisconfigured, Err: err}
	}
	newID, now := f.NewID, f.Now
	if newID == nil {
		newID = randomID
	}
	if now == nil {
		now = time.Now
	}
	id := fmt.Sprintf("%s-%s", now().UTC().Format("20060102T150405"), newID())
	rec := fileRecord{
		MessageID: id, Time: now().UTC(), Tenant: req.Tenant, Region: req.Region, EnvelopeFrom: req.EnvelopeFrom,
		Recipients: req.Recipients, ConfigurationSet: req.ConfigurationSet, Tags: req.Tags,
		IdentityARN: req.IdentityARN, SESTenant: req.SESTenant, EndpointID: req.EndpointID,
		DisableTracking: req.DisableTracking, Size: len(req.Raw),
	}
	meta, _ := json.MarshalIndent(rec, "", "  ")
	if err := writeFileSync(filepath.Join(f.Dir, id+".eml"), req.Raw); err != nil {
		return nil, &SendError{Kind: KindTransient, Err: err}
	}
	if err := writeFileSync(filepath.Join(f.Dir, id+".json"), append(meta, '\n')); err != nil {
		return nil, &SendError{Kind: KindTransient, Err: err}
	}
	return &Result{MessageID: id}, nil
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
