module github.com/multiproc/multiproc/tools

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/multiproc/multiproc/ipc v0.0.0
	github.com/spf13/cobra v1.10.2
	golang.org/x/sys v0.50.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/multiproc/multiproc/ipc => ../ipc
	github.com/multiproc/multiproc/proto => ../proto
)
