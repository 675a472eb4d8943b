module github.com/multiproc/multiproc/tools

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	github.com/multiproc/multiproc/cluster v0.1.0
	github.com/multiproc/multiproc/forkserver v0.1.0
	github.com/multiproc/multiproc/internal/base v0.1.0
	github.com/multiproc/multiproc/internal/mptest v0.1.0
	github.com/multiproc/multiproc/ipc v0.1.0
	github.com/multiproc/multiproc/manager v0.1.0
	github.com/multiproc/multiproc/pool v0.1.0
	github.com/multiproc/multiproc/process v0.1.0
	github.com/multiproc/multiproc/shm v0.1.0
	github.com/multiproc/multiproc/tracker v0.1.0
	github.com/nats-io/nats.go v1.56.0
	github.com/spf13/cobra v1.10.2
	go.uber.org/zap v1.28.0
	golang.org/x/mod v0.43.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/antithesishq/antithesis-sdk-go v0.9.0-default-no-op // indirect
	github.com/google/go-tpm v0.9.8 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/minio/highwayhash v1.0.4 // indirect
	github.com/multiproc/multiproc/proto v0.1.0 // indirect
	github.com/multiproc/multiproc/syncprim v0.1.0 // indirect
	github.com/nats-io/jwt/v2 v2.8.3 // indirect
	github.com/nats-io/nats-server/v2 v2.15.3 // indirect
	github.com/nats-io/nkeys v0.4.17 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/time v0.16.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// --- replaces generated from modules.txt (make gomod); edit the table there ---
replace (
	github.com/multiproc/multiproc/cluster => ../cluster
	github.com/multiproc/multiproc/docs => ../docs
	github.com/multiproc/multiproc/forkserver => ../forkserver
	github.com/multiproc/multiproc/internal/base => ../internal/base
	github.com/multiproc/multiproc/internal/mptest => ../internal/mptest
	github.com/multiproc/multiproc/ipc => ../ipc
	github.com/multiproc/multiproc/manager => ../manager
	github.com/multiproc/multiproc/pool => ../pool
	github.com/multiproc/multiproc/process => ../process
	github.com/multiproc/multiproc/proto => ../proto
	github.com/multiproc/multiproc/queue => ../queue
	github.com/multiproc/multiproc/shm => ../shm
	github.com/multiproc/multiproc/syncprim => ../syncprim
	github.com/multiproc/multiproc/tracker => ../tracker
)

// --- end of generated replaces ---
