module github.com/multiproc/multiproc/proto

go 1.26.0

// proto is the bottom of the module graph: it may not import any other
// multiproc module. These replaces make such an import fail loudly.
replace (
	github.com/multiproc/multiproc/forkserver => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/ipc => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/manager => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/pool => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/process => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/queue => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/shm => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/syncprim => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tools => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tracker => ../FORBIDDEN_DEPENDENCY
)

require google.golang.org/protobuf v1.36.12 // indirect

tool google.golang.org/protobuf/cmd/protoc-gen-go
