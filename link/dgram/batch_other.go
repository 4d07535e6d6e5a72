//go:build !linux || dgramportable

package dgram

// Without recvmmsg and sendmmsg a batch is the one-message-a-call loop of
// msgio.go. The dgramportable tag puts Linux on it too, to run the
// package's tests on that path.

type (
	rxBatch = msgRx
	txBatch = msgTx
)

func newRxBatch(n int, wantNames bool) *rxBatch { return newMsgRx(n, wantNames) }
