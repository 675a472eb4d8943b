module github.com/multiproc/multiproc/internal/base

go 1.26.0

require (
	github.com/google/go-cmp v0.7.0
	google.golang.org/protobuf v1.36.12
)

require golang.org/x/sys v0.50.0

// --- replaces generated from modules.txt (make gomod); edit the table there ---
replace (
	github.com/multiproc/multiproc/cluster => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/docs => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/forkserver => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/internal/mptest => ../../internal/mptest
	github.com/multiproc/multiproc/ipc => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/manager => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/pool => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/process => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/proto => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/queue => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/shm => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/syncprim => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tools => ../../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tracker => ../../FORBIDDEN_DEPENDENCY
)

// --- end of generated replaces ---
