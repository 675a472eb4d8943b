// SPDX-License-Identifier: Apache-2.0

package manager

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	pb "github.com/multiproc/multiproc/proto/manager/v1"
)

// TLS makes Listen accept and Connect dial TLS connections over TCP
// (ipc.TLS): the TLS handshake comes first, then the authkey
// handshake and every request inside TLS. For Listen, cfg is a server
// configuration with a certificate (and ClientAuth/ClientCAs to require
// client certificates); for Connect, a client configuration (RootCAs to
// trust the server's certificate; an empty ServerName is the host of the
// address). TLS is for "tcp" only: unix sockets refuse it.
//
// Proxies made through a Client connected with TLS carry that fact when
// they are handed to another process, which then dials with the
// configuration set by SetClientTLS. Start cannot take a *tls.Config (it
// cannot cross to the server process): use ServerTLS there.
func TLS(cfg *tls.Config) Option {
	return func(o *options) {
		o.tls = nil
		if cfg != nil {
			o.tls = cfg.Clone()
		}
	}
}

// ServerTLS makes the server process that Start spawns listen with
// TLS (Address must then be a "tcp" address), with the configuration
// made by the function registered under name with RegisterServerTLS. The
// parent's own client talks to the server over a private pipe and needs
// no TLS; remote clients Connect with TLS, and children handed the
// Manager's proxies dial with SetClientTLS's configuration.
func ServerTLS(name string) Option {
	return func(o *options) { o.serverTLS = name }
}

var serverTLS struct {
	sync.RWMutex
	m map[string]func() (*tls.Config, error)
}

// RegisterServerTLS registers fn, which returns the server TLS
// configuration (with its certificate) of a server process that Start
// spawns with ServerTLS(name). fn runs in the server process, which is
// this binary re-executed: register at package level (a package var or
// init), so that the server process has it too, and let fn load the
// certificate and key itself (from files, the environment, ...). It
// panics if name is empty or taken, and returns name.
func RegisterServerTLS(name string, fn func() (*tls.Config, error)) string {
	serverTLS.Lock()
	defer serverTLS.Unlock()
	if serverTLS.m == nil {
		serverTLS.m = map[string]func() (*tls.Config, error){}
	}
	if _, dup := serverTLS.m[name]; dup || name == "" || fn == nil {
		panic(fmt.Sprintf("manager: RegisterServerTLS(%q): empty, nil or already registered", name))
	}
	serverTLS.m[name] = fn
	return name
}

func lookupServerTLS(name string) func() (*tls.Config, error) {
	serverTLS.RLock()
	defer serverTLS.RUnlock()
	return serverTLS.m[name]
}

var clientTLS atomic.Pointer[tls.Config]

// SetClientTLS sets the client TLS configuration with which this process
// connects to servers that take only TLS, for proxies handed to it by
// another process (MultiprocAttach). A proxy's descriptor says whether its
// server needs TLS (never the configuration itself: trusted roots and
// client keys do not travel); attaching one without a configuration set
// fails on its first call with an error that says to call SetClientTLS.
// Call it in the receiving process before the proxy's first call, for
// example at the top of the child's function. cfg is cloned; nil clears
// it. Connections already made keep their configuration.
//
// When the handing process checked the server's certificate against an
// explicit ServerName and cfg has none, that name is used.
func SetClientTLS(cfg *tls.Config) {
	if cfg != nil {
		cfg = cfg.Clone()
	}
	clientTLS.Store(cfg)
}

// attachTLS returns the Connect options for a proxy's descriptor.
func attachTLS(d *pb.HandleDesc) ([]Option, error) {
	if !d.Tls {
		return nil, nil
	}
	cfg := clientTLS.Load()
	if cfg == nil {
		return nil, fmt.Errorf("manager: the server at %s %s takes only TLS connections: call manager.SetClientTLS in this process before using its proxies", d.Network, d.Address)
	}
	if cfg.ServerName == "" && d.TlsServerName != "" {
		cfg = cfg.Clone()
		cfg.ServerName = d.TlsServerName
	}
	return []Option{TLS(cfg)}, nil
}

var errStartTLS = errors.New("manager: Start cannot send a *tls.Config to the server process: register one with RegisterServerTLS and pass ServerTLS(name)")
