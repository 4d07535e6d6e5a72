package vhostuser

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/slipway-net/slipway/link"
	"github.com/slipway-net/slipway/test/vhostfront"
)

// While a migration runs (LOG_SHMFD, LOG_ALL), every page of guest memory
// the back-end changes is marked in the front-end's bitmap: the property
// QEMU's migration relies on, checked by comparing the guest memory
// before and after frames went to the guest and from it. Pages the driver
// itself writes (descriptor tables, available rings) are left out, and
// so that marking everything could not pass, pages nobody wrote must stay
// clear. Given a bitmap but no LOG_ALL, nothing is marked.
func TestDirtyLog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        vhostfront.Options
		noLogAll bool
	}{
		{"linux", vhostfront.Options{Features: vhostfront.Linux}, false},
		{"two-regions", vhostfront.Options{Features: vhostfront.Linux, Regions: 2, Gap: true}, false},
		{"big-packets", vhostfront.Options{Features: vhostfront.Linux &^ vhostfront.FMrgRxbuf}, false},
		{"no-log-all", vhostfront.Options{Features: vhostfront.Linux}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Protocol = vhostfront.PReplyAck | vhostfront.PLogShmFD
			l, fe := started(t, tc.o)
			if fe.ProtoAcked&vhostfront.PLogShmFD == 0 || fe.Offered&vhostfront.FLogAll == 0 {
				t.Fatalf("back-end offers features %#x, protocol %#x: no LOG_ALL or LOG_SHMFD", fe.Offered, fe.ProtoOffered)
			}
			bitmap, err := fe.StartLog(tc.noLogAll)
			if err != nil {
				t.Fatal(err)
			}
			before := bytes.Clone(fe.Mem)
			buf := make([]byte, 70000)
			sizes := []int{60, 1514, 30000, 65000}
			for i := 0; i < 40; i++ {
				f := append(make([]byte, link.VnetHdrLen), testFrame(sizes[i%len(sizes)], byte(i))...)
				for {
					n, err := l.Write(link.Frames(f))
					if err == nil && n == 1 {
						break
					}
					if !errors.Is(err, link.ErrQueueFull) {
						t.Fatalf("write %d: %v", i, err)
					}
					time.Sleep(time.Millisecond)
				}
				if _, _, err := fe.RecvTimeout(buf, 10*time.Second); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			// And a few from the guest: the transmit ring's used
			// entries are the back-end's writes too.
			go func() {
				for i := 0; i < 8; i++ {
					fe.Send(testFrame(1514, byte(i)))
				}
			}()
			readFrames(t, l, 8)
			time.Sleep(50 * time.Millisecond) // the front-end's receiver goes idle
			driver := fe.DriverPages()
			dirty := func(off int) bool {
				p := fe.GPA(off) / 4096
				return bitmap[p/8]&(1<<(p%8)) != 0
			}
			changed, marked, missed := 0, 0, 0
			for off := 0; off < len(fe.Mem); off += 4096 {
				end := min(off+4096, len(fe.Mem))
				if dirty(off) {
					marked++
				}
				if driver[off/4096] || bytes.Equal(before[off:end], fe.Mem[off:end]) {
					continue
				}
				changed++
				if !dirty(off) {
					missed++
				}
			}
			t.Logf("%d pages changed, %d marked, %d of the changed not marked, of %d", changed, marked, missed, len(fe.Mem)/4096)
			if changed == 0 {
				t.Fatal("no page changed: the test moved no frames")
			}
			if tc.noLogAll {
				if marked != 0 {
					t.Errorf("%d pages marked without LOG_ALL", marked)
				}
				return
			}
			if missed != 0 {
				t.Errorf("%d of %d changed pages not marked dirty", missed, changed)
			}
			if marked > changed+len(driver)+8 {
				t.Errorf("%d pages marked, only %d changed: the log marks pages nobody wrote", marked, changed)
			}
		})
	}
}
