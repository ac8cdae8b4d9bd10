// Package metricnames lists the names of every metric the relay exports:
// relay.Metrics, the SES sender's collector, the queue's, the suppression
// store's and the unsubscribe endpoint's collectors.
// Tests that check docs, alert rules and the Grafana dashboard against the
// code use it, so a new metric cannot be forgotten in any of them.
package metricnames

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/unsubscribe"
)

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// All returns the sorted names of every metric the relay exports (without
// the _bucket, _sum and _count suffixes of histograms).
func All() ([]string, error) {
	seen := map[string]bool{}
	describe := func(c prometheus.Collector) {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				seen[m[1]] = true
			}
		}
	}
	m := relay.NewMetrics(nil)
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			return nil, fmt.Errorf("relay.Metrics.%s is not a collector", v.Type().Field(i).Name)
		}
		describe(c)
	}
	sender, err := ses.New(context.Background(), ses.Options{Region: "us-east-1", AWSConfig: &aws.Config{Region: "us-east-1"}})
	if err != nil {
		return nil, err
	}
	describe(sender.Collector())
	// The queue registers its own series when it opens.
	dir, err := os.MkdirTemp("", "sesrelay-metricnames-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	q, err := queue.Open(dir, queue.Options{Registerer: collectingRegisterer{prometheus.NewRegistry(), describe}})
	if err != nil {
		return nil, err
	}
	q.Close()
	// So does the suppression store,
	sup := config.DefaultSuppression()
	sup.Dir = dir
	ss, err := suppression.Open(context.Background(), sup, suppression.Options{Registerer: collectingRegisterer{prometheus.NewRegistry(), describe}})
	if err != nil {
		return nil, err
	}
	ss.Close()
	// and the unsubscribe endpoint when it is built.
	cfg := config.Defaults()
	if _, err := unsubscribe.NewHandler(cfg.UnsubscribeServer, unsubscribe.Options{
		Config: func() *config.Config { return &cfg }, Store: unsubscribe.RecorderFunc(nil),
		Registerer: collectingRegisterer{prometheus.NewRegistry(), describe},
	}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// collectingRegisterer describes each collector registered through it.
type collectingRegisterer struct {
	*prometheus.Registry
	describe func(prometheus.Collector)
}

func (r collectingRegisterer) Register(c prometheus.Collector) error {
	r.describe(c)
	return r.Registry.Register(c)
}

func (r collectingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}
