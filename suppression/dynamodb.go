package suppression

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/sesrelay/sesrelay/config"
)

// The DynamoDB table (docs/unsubscribe.md#the-dynamodb-table) has one item
// per entry:
//
//	pk        S  tenant                      partition key
//	sk        S  list LF recipient           sort key
//	list      S  list
//	recipient S  recipient (Normalize)
//	created   S  RFC 3339 time, UTC
//	source    S  unsubscribe, import, admin, ...
//
// check refuses control characters in tenant, list and recipient, so LF
// separates them unambiguously and "list LF" is an exact prefix for List.
const (
	attrPK        = "pk"
	attrSK        = "sk"
	attrList      = "list"
	attrRecipient = "recipient"
	attrCreated   = "created"
	attrSource    = "source"
)

// batchGetMax is BatchGetItem's limit of keys per request.
const batchGetMax = 100

// DynamoDB is the store shared by every replica: one DynamoDB table. It
// reads with strong consistency, so the only delay between an Add through
// one replica and its effect on another is the other's cache.
type DynamoDB struct {
	client *dynamodb.Client
	table  string
	now    func() time.Time
}

var (
	_ Store   = (*DynamoDB)(nil)
	_ Batcher = (*DynamoDB)(nil)
)

// OpenDynamoDB builds a client for the table c names and checks that the
// table exists (DescribeTable), so a wrong name or missing permission
// fails at start. o.AWSConfig, when set, replaces the default credential
// chain; o.DefaultRegion is used when c.Region is empty.
func OpenDynamoDB(ctx context.Context, c config.DynamoDBTable, o Options) (*DynamoDB, error) {
	s, err := NewDynamoDB(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if _, err := s.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}); err != nil {
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("suppression.dynamodb.table: table %q does not exist (create it as docs/unsubscribe.md shows)", s.table)
		}
		return nil, fmt.Errorf("suppression.dynamodb.table: describing table %q: %w", s.table, err)
	}
	return s, nil
}

// NewDynamoDB is OpenDynamoDB without the check that the table exists (for
// CreateTable).
func NewDynamoDB(ctx context.Context, c config.DynamoDBTable, o Options) (*DynamoDB, error) {
	if c.Table == "" {
		return nil, errors.New("suppression.dynamodb.table: required when suppression.store is dynamodb")
	}
	region := c.Region
	if region == "" {
		region = o.DefaultRegion
	}
	var cfg aws.Config
	if o.AWSConfig != nil {
		cfg = o.AWSConfig.Copy()
	} else {
		var err error
		cfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(region))
		if err != nil {
			return nil, fmt.Errorf("suppression.dynamodb: loading AWS configuration: %w", err)
		}
	}
	if region != "" {
		cfg.Region = region
	}
	client := dynamodb.NewFromConfig(cfg, func(do *dynamodb.Options) {
		if c.Endpoint != "" {
			do.BaseEndpoint = aws.String(c.Endpoint)
		}
	})
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &DynamoDB{client: client, table: c.Table, now: now}, nil
}

// CreateTable creates the table with the key schema above and on-demand
// capacity, and waits until it is active. An existing table is not an
// error.
func (s *DynamoDB) CreateTable(ctx context.Context) error {
	_, err := s.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("suppression: creating table %q: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("suppression: waiting for table %q: %w", s.table, err)
	}
	return nil
}

func sortKey(list, rcpt string) string { return list + "\n" + rcpt }

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

func key(tenant, list, rcpt string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: str(tenant), attrSK: str(sortKey(list, rcpt))}
}

// Suppressed implements Store with consistent BatchGetItem reads of at
// most 100 keys each, retrying unprocessed keys until ctx ends.
func (s *DynamoDB) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if tenant == "" || list == "" || len(rcpts) == 0 {
		return out, nil
	}
	byKey := make(map[string][]string, len(rcpts)) // sort key -> rcpts as given
	var keys []string
	for _, r := range rcpts {
		sk := sortKey(list, Normalize(r))
		if _, ok := byKey[sk]; !ok {
			keys = append(keys, sk)
		}
		byKey[sk] = append(byKey[sk], r)
	}
	for len(keys) > 0 {
		n := min(len(keys), batchGetMax)
		chunk := keys[:n]
		keys = keys[n:]
		ka := types.KeysAndAttributes{ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String(attrSK)}
		for _, sk := range chunk {
			ka.Keys = append(ka.Keys, map[string]types.AttributeValue{attrPK: str(tenant), attrSK: str(sk)})
		}
		req := map[string]types.KeysAndAttributes{s.table: ka}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if err := sleep(ctx, backoff(attempt)); err != nil {
					return nil, fmt.Errorf("suppression: lookup: unprocessed keys: %w", err)
				}
			}
			res, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("suppression: lookup: %w", err)
			}
			for _, item := range res.Responses[s.table] {
				if v, ok := item[attrSK].(*types.AttributeValueMemberS); ok {
					for _, r := range byKey[v.Value] {
						out[r] = true
					}
				}
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}

func backoff(attempt int) time.Duration {
	d := 20 * time.Millisecond << min(attempt, 6)
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Add implements Store: a conditional PutItem, so the first entry stays.
func (s *DynamoDB) Add(ctx context.Context, e Entry) error {
	if err := check(&e); err != nil {
		return err
	}
	if e.Created.IsZero() {
		e.Created = s.now()
	}
	item := key(e.Tenant, e.List, e.Recipient)
	item[attrList] = str(e.List)
	item[attrRecipient] = str(e.Recipient)
	item[attrCreated] = str(e.Created.UTC().Format(time.RFC3339Nano))
	if e.Source != "" {
		item[attrSource] = str(e.Source)
	}
	_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           aws.String(s.table),
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(" + attrPK + ")"),
	})
	var exists *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("suppression: add: %w", err)
	}
	return nil
}

// AddMany implements Batcher with conditional PutItems, several at a time
// (BatchWriteItem has no conditions and would overwrite the first entry).
func (s *DynamoDB) AddMany(ctx context.Context, es []Entry) error {
	checked := make([]Entry, len(es))
	for i, e := range es {
		if err := check(&e); err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		checked[i] = e
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, e := range checked {
		g.Go(func() error { return s.Add(gctx, e) })
	}
	return g.Wait()
}

// Remove implements Store.
func (s *DynamoDB) Remove(ctx context.Context, tenant, list, recipient string) error {
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(s.table),
		Key:       key(tenant, list, Normalize(recipient)),
	})
	if err != nil {
		return fmt.Errorf("suppression: remove: %w", err)
	}
	return nil
}

// List implements Store with a Query on the tenant's partition (and the
// list's sort key prefix); entries come sorted by list, then recipient.
func (s *DynamoDB) List(ctx context.Context, tenant, list string, fn func(Entry) error) error {
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(s.table),
		KeyConditionExpression:    aws.String("#pk = :t"),
		ExpressionAttributeNames:  map[string]string{"#pk": attrPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":t": str(tenant)},
		ConsistentRead:            aws.Bool(true),
	}
	if list != "" {
		in.KeyConditionExpression = aws.String("#pk = :t AND begins_with(#sk, :p)")
		in.ExpressionAttributeNames["#sk"] = attrSK
		in.ExpressionAttributeValues[":p"] = str(list + "\n")
	}
	p := dynamodb.NewQueryPaginator(s.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("suppression: list: %w", err)
		}
		for _, item := range page.Items {
			e, err := decodeItem(item)
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeItem(item map[string]types.AttributeValue) (Entry, error) {
	get := func(name string) string {
		if v, ok := item[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	e := Entry{Tenant: get(attrPK), Source: get(attrSource)}
	sk := get(attrSK)
	i := strings.LastIndexByte(sk, '\n')
	if e.Tenant == "" || i < 0 {
		return Entry{}, fmt.Errorf("suppression: malformed item (pk %q, sk %q)", e.Tenant, sk)
	}
	e.List, e.Recipient = sk[:i], sk[i+1:]
	if c := get(attrCreated); c != "" {
		t, err := time.Parse(time.RFC3339Nano, c)
		if err != nil {
			return Entry{}, fmt.Errorf("suppression: item (pk %q, sk %q): created: %w", e.Tenant, sk, err)
		}
		e.Created = t
	}
	return e, nil
}

// Close implements Store; the client holds nothing to release.
func (s *DynamoDB) Close() error { return nil }
