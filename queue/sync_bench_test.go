package queue

import (
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkMakeDurable compares the two queue.sync modes on their own:
// k small files rewritten, then made durable by one syncfs of the file
// system or by one fsync each. One op is one batch of k files. Run with
//
//	go test -run '^$' -bench MakeDurable -benchtime 300x ./queue/
func BenchmarkMakeDurable(b *testing.B) {
	buf := make([]byte, 3000)
	for _, k := range []int{1, 8, 16} {
		dir := b.TempDir()
		fds := make([]int, k)
		for i := range fds {
			fd, err := unix.Open(filepath.Join(dir, fmt.Sprint(i)), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			fds[i] = fd
		}
		dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(dfd)
		for _, mode := range []SyncMode{SyncFileSystem, SyncFile} {
			b.Run(fmt.Sprintf("%s/files=%d", mode, k), func(b *testing.B) {
				cpu0 := processCPU()
				for n := 0; b.Loop(); n++ {
					for _, fd := range fds {
						buf[0] = byte(n)
						if _, err := unix.Pwrite(fd, buf, 0); err != nil {
							b.Fatal(err)
						}
					}
					if mode == SyncFileSystem {
						err = unix.Syncfs(dfd)
					} else {
						for _, fd := range fds {
							if err = unix.Fsync(fd); err != nil {
								break
							}
						}
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N*k), "cpu-µs/file")
			})
		}
	}
}
