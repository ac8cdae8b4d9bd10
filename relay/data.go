package relay

import (
	"bytes"
	"io"
	"runtime/debug"
)

// releaseAbove is the buffer capacity from which readData returns the
// memory of outgrown buffers to the OS before growing again.
const releaseAbove = 4 << 20

// readData reads a message into buf (DATA, BDAT) until r ends. It grows buf
// by doubling like bytes.Buffer.ReadFrom, with one difference for large
// messages sent without SIZE= (whose buffer could not be sized at once):
// before growing a buffer of releaseAbove or more, it returns the free heap
// to the OS. Without that, the outgrown buffers (half the final capacity in
// all) stay resident beside the live ones while the largest is allocated,
// and a 30 MiB message peaked at 64 MiB of buffers; with it, at the last
// two (48 MiB). The cost, a garbage collection per doubling above 4 MiB,
// is paid by messages that take seconds to upload anyway.
func readData(buf *bytes.Buffer, r io.Reader) error {
	for {
		if buf.Cap()-buf.Len() < bytes.MinRead {
			if buf.Cap() >= releaseAbove {
				debug.FreeOSMemory()
			}
			buf.Grow(max(buf.Cap(), bytes.MinRead))
		}
		free := buf.AvailableBuffer()[:buf.Cap()-buf.Len()]
		n, err := r.Read(free)
		buf.Write(free[:n]) // in place: free is buf's own spare capacity
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
