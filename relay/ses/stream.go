package ses

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Streaming the SendEmail body.
//
// The SDK serializes a SendEmail request into one byte slice: the message
// in base64 inside the JSON document (4/3 of the message), then a copy of
// that slice, and net/http copies it once more on the way out. For a 30 MiB
// message that is more than 80 MiB on top of the message itself.
//
// Instead, Send hands the SDK an input whose RawMessage.Data is empty and
// the message itself in the context (withRaw). The SDK's own serializer
// (the "OperationSerializer" middleware) writes the JSON document around
// the empty value, with every other field, the URL, and the headers, as it
// always does; streamRawContent, the next middleware of the serialize step,
// then replaces that document's body by a rawBody: the same document, with
// the base64 of the message produced on the fly where the empty value was.
// The body is seekable, so the SDK's SigV4 middleware reads it once for
// the payload hash and rewinds it, and net/http reads it once more to
// send it: the message is held once, never encoded whole. Everything after
// the serializer (endpoint resolution, SigV4 signing, the HTTP client,
// error decoding) is the SDK's, unchanged; the bytes on the wire are the
// ones the SDK would have sent (TestStreamedBodyIsTheSDKBody).

// streamRawContentID is the middleware's ID in the serialize step.
const streamRawContentID = "sesrelay.StreamRawContent"

// rawKey is the context key of the message streamRawContent sends.
type rawKey struct{}

// materializeMax is the largest message whose request body is produced
// whole rather than streamed. Streaming a small body costs more than it
// saves: the base64 is computed twice (payload hash, then send), and
// net/http, which sends a body it does not know to be in memory apart from
// the headers (one more write(2)), copies it through a buffer it allocates
// per request. A whole body is a bytes.Reader: hashed in one pass, sent with
// the headers in the transport's write buffer (WriteBufferSize in New).
// Above this size the body is a stream, never materialised.
const materializeMax = 128 << 10

// bodyKey is the context key of a body produced whole: the bytes of the
// request's stream, which keepAliveBodies.Do hands to net/http as a
// bytes.Reader.
type bodyKey struct{}

// withRaw returns ctx carrying raw, the message of the SendEmail call made
// with it; the call's input must have an empty, non-nil RawMessage.Data.
func withRaw(ctx context.Context, raw []byte) context.Context {
	return context.WithValue(ctx, rawKey{}, raw)
}

// emptyData is the placeholder RawMessage.Data of a streamed call.
var emptyData = []byte{}

// rawPlaceholder is what the SDK writes for a RawMessage with an empty
// Data. Member names are JSON keys, outside any string value, so the
// sequence cannot come from a string field (its quotes would be escaped).
var rawPlaceholder = []byte(`"Raw":{"Data":""`)

// addStreamRawContent puts streamRawContent right after the SDK's
// serializer. It is a client API option: it applies to every operation and
// does nothing to a call without withRaw.
func addStreamRawContent(st *middleware.Stack) error {
	return st.Serialize.Insert(streamRawContent{}, "OperationSerializer", middleware.After)
}

// streamRawContent replaces the serialized SendEmail document by a rawBody
// that streams the message of withRaw into it.
type streamRawContent struct{}

func (streamRawContent) ID() string { return streamRawContentID }

func (streamRawContent) HandleSerialize(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (
	middleware.SerializeOutput, middleware.Metadata, error,
) {
	raw, ok := ctx.Value(rawKey{}).([]byte)
	if !ok {
		return next.HandleSerialize(ctx, in)
	}
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("ses: unexpected transport request %T", in.Request)
	}
	var doc []byte
	if s := req.GetStream(); s != nil {
		var err error
		if doc, err = io.ReadAll(s); err != nil {
			return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("ses: reading the serialized request: %w", err)
		}
	}
	body, err := newRawBody(doc, raw)
	if err != nil {
		return middleware.SerializeOutput{}, middleware.Metadata{}, err
	}
	var stream io.Reader = body
	if len(raw) <= materializeMax {
		// A small message's body is produced once, whole: the payload hash
		// and net/http then read the same bytes (see keepAliveBodies.Do).
		b := make([]byte, body.Size())
		if _, err := io.ReadFull(body, b); err != nil {
			return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("ses: producing the request body: %w", err)
		}
		stream = bytes.NewReader(b)
		ctx = context.WithValue(ctx, bodyKey{}, b)
	}
	if req, err = req.SetStream(stream); err != nil {
		return middleware.SerializeOutput{}, middleware.Metadata{}, fmt.Errorf("ses: setting the request body: %w", err)
	}
	in.Request = req
	return next.HandleSerialize(ctx, in)
}

// rawBody is a JSON document with the base64 of a message produced where
// the document had an empty Data value. It is an io.ReadSeeker over
// prefix ‖ base64(raw) ‖ suffix, encoding only the groups a Read asks for.
type rawBody struct {
	prefix, suffix []byte // prefix ends in `"Data":"`, suffix starts with `"`
	raw            []byte
	enc            int64 // base64 length of raw
	pos            int64
}

// newRawBody splits doc, a serialized SendEmail request with an empty
// RawMessage.Data, around the empty value.
func newRawBody(doc, raw []byte) (*rawBody, error) {
	i := bytes.Index(doc, rawPlaceholder)
	if i < 0 || bytes.Index(doc[i+1:], rawPlaceholder) >= 0 {
		return nil, errors.New("ses: the serialized SendEmail request does not have exactly one empty RawMessage.Data")
	}
	cut := i + len(rawPlaceholder) - 1 // between the two quotes
	return &rawBody{prefix: doc[:cut], suffix: doc[cut:], raw: raw, enc: int64(base64.StdEncoding.EncodedLen(len(raw)))}, nil
}

// Size is the length of the whole body.
func (b *rawBody) Size() int64 { return int64(len(b.prefix)) + b.enc + int64(len(b.suffix)) }

func (b *rawBody) Read(p []byte) (int, error) {
	n := 0
	pre, enc := int64(len(b.prefix)), b.enc
	for n < len(p) {
		switch pos := b.pos; {
		case pos < pre:
			c := copy(p[n:], b.prefix[pos:])
			n += c
			b.pos += int64(c)
		case pos < pre+enc:
			c := b.encodeAt(p[n:], pos-pre)
			n += c
			b.pos += int64(c)
		case pos < b.Size():
			c := copy(p[n:], b.suffix[pos-pre-enc:])
			n += c
			b.pos += int64(c)
		default:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
	}
	return n, nil
}

// encodeAt writes base64 of raw starting at offset off of the encoding
// into dst and returns how many bytes it wrote (at least one when dst is
// not empty). Whole groups go straight into dst; a group cut by dst's
// end or by off goes through a 4-byte scratch.
func (b *rawBody) encodeAt(dst []byte, off int64) int {
	group, within := off/4, int(off%4)
	if within == 0 && len(dst) >= 4 {
		groups := min(int64(len(dst)/4), b.enc/4-group)
		src := b.raw[group*3 : min((group+groups)*3, int64(len(b.raw)))]
		base64.StdEncoding.Encode(dst, src)
		return int(groups * 4)
	}
	var q [4]byte
	base64.StdEncoding.Encode(q[:], b.raw[group*3:min(group*3+3, int64(len(b.raw)))])
	return copy(dst, q[within:])
}

// chunks are the buffers of WriteTo.
var chunks = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// WriteTo writes the rest of the body to w through a pooled buffer. The
// SigV4 payload hash reads the body with io.Copy into a hash, which has no
// ReadFrom: without WriteTo that copy would allocate 32 KiB per call.
func (b *rawBody) WriteTo(w io.Writer) (int64, error) {
	buf := chunks.Get().(*[16 << 10]byte)
	defer chunks.Put(buf)
	var total int64
	for {
		n, err := b.Read(buf[:])
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (b *rawBody) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = b.pos + offset
	case io.SeekEnd:
		abs = b.Size() + offset
	default:
		return 0, errors.New("ses: rawBody.Seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("ses: rawBody.Seek: negative position")
	}
	b.pos = abs
	return abs, nil
}
