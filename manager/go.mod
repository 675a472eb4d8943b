module github.com/multiproc/multiproc/manager

go 1.26.0

// --- replaces generated from modules.txt (make gomod); edit the table there ---
replace (
	github.com/multiproc/multiproc/cluster => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/docs => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/forkserver => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/internal/base => ../internal/base
	github.com/multiproc/multiproc/internal/mptest => ../internal/mptest
	github.com/multiproc/multiproc/ipc => ../ipc
	github.com/multiproc/multiproc/pool => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/process => ../process
	github.com/multiproc/multiproc/proto => ../proto
	github.com/multiproc/multiproc/queue => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/shm => ../shm
	github.com/multiproc/multiproc/syncprim => ../syncprim
	github.com/multiproc/multiproc/tools => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tracker => ../tracker
)

// --- end of generated replaces ---

require (
	github.com/google/go-cmp v0.7.0
	github.com/multiproc/multiproc/internal/base v0.1.0
	github.com/multiproc/multiproc/internal/mptest v0.1.0
	github.com/multiproc/multiproc/ipc v0.1.0
	github.com/multiproc/multiproc/process v0.1.0
	github.com/multiproc/multiproc/proto v0.1.0
	github.com/multiproc/multiproc/syncprim v0.1.0
	go.uber.org/zap v1.28.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/multiproc/multiproc/shm v0.1.0 // indirect
	github.com/multiproc/multiproc/tracker v0.1.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
