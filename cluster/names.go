// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
)

// What the cluster pool names in NATS. One stream holds every build's
// tasks; subjects and the agents' consumer carry the build's namespace,
// so an agent only ever receives chunks of its own binary:
//
//	stream   MPC_TASKS       subjects mpc.task.<ns>.<caller>.<job>.<chunk>
//	consumer agents_<ns>     (durable, shared by the agents of that build)
//	core     mpc.res.<caller>  results and claims for one caller
//	core     mpc.ctl.<ns>      Cancel messages
//	KV       MPC_STATUS      caller.<ns>.<id> and agent.<ns>.<id> heartbeats
const (
	streamName   = "MPC_TASKS"
	taskSubjects = "mpc.task.>"
	statusBucket = "MPC_STATUS"
)

func taskSubject(ns, caller string, job, id uint64) string {
	return "mpc.task." + ns + "." + caller + "." + u64(job) + "." + u64(id)
}

func jobSubjects(ns, caller string, job uint64) string {
	return "mpc.task." + ns + "." + caller + "." + u64(job) + ".>"
}

func callerSubjects(ns, caller string) string { return "mpc.task." + ns + "." + caller + ".>" }

func nsSubjects(ns string) string { return "mpc.task." + ns + ".>" }

func resultSubject(caller string) string { return "mpc.res." + caller }

func controlSubject(ns string) string { return "mpc.ctl." + ns }

func consumerName(ns string) string { return "agents_" + ns }

func callerKey(ns, id string) string { return "caller." + ns + "." + id }

func agentKey(ns, id string) string { return "agent." + ns + "." + id }

func u64(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// Namespace returns the name under which this binary's tasks travel: a
// digest of the binary's build identity (its Go build ID, or the digest
// of the executable when it has none) and GOARCH. Chunks use the pool's
// encoding, which assumes the same binary at both ends; agents of
// another build never receive them.
func Namespace() string { return namespace() }

var namespace = sync.OnceValue(func() string { return buildDigest() + "_" + runtime.GOARCH })

func buildDigest() string {
	h := sha256.New()
	if f, err := elf.Open("/proc/self/exe"); err == nil {
		if s := f.Section(".note.go.buildid"); s != nil {
			if b, err := s.Data(); err == nil && len(b) > 0 {
				h.Write(b)
				f.Close()
				return hex.EncodeToString(h.Sum(nil))[:12]
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/self/exe"); err == nil {
		io.Copy(h, f)
		f.Close()
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// nsOfKey returns the namespace and id of a status key "kind.<ns>.<id>".
func nsOfKey(key string) (kind, ns, id string, ok bool) {
	parts := strings.SplitN(key, ".", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
