module github.com/slipway-net/slipway

go 1.26.8
