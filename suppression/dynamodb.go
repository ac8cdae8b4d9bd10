package suppression

import (
	"context"
	"errors"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

// OpenDynamoDB opens the shared store.
func OpenDynamoDB(ctx context.Context, c config.DynamoDBTable, defaultRegion string, now func() time.Time) (Store, error) {
	return nil, errors.New("suppression.store: dynamodb is not available yet")
}
