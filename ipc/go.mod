module github.com/multiproc/multiproc/ipc

go 1.26.0

require google.golang.org/protobuf v1.36.12

require golang.org/x/sys v0.50.0

replace github.com/multiproc/multiproc/proto => ../proto

// ipc sits just above proto: it may not import any other multiproc module.
replace (
	github.com/multiproc/multiproc/forkserver => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/manager => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/pool => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/process => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/queue => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/shm => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/syncprim => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tools => ../FORBIDDEN_DEPENDENCY
	github.com/multiproc/multiproc/tracker => ../FORBIDDEN_DEPENDENCY
)
