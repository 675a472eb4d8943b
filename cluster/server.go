// SPDX-License-Identifier: Apache-2.0

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// embedded is a nats-server with JetStream running in this process, its
// store in a private temporary directory.
type embedded struct {
	srv *server.Server
	dir string
	url string
}

func startEmbedded(o *options, log *zap.Logger) (*embedded, error) {
	dir, err := os.MkdirTemp("", "multiproc-cluster-")
	if err != nil {
		return nil, fmt.Errorf("cluster: store directory: %w", err)
	}
	host, port := "127.0.0.1", -1
	if o.listen != "" {
		if host, port, err = splitListen(o.listen); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	sopts := &server.Options{
		ServerName:   "multiproc-" + strconv.Itoa(os.Getpid()),
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     dir,
		NoSigs:       true,
		NoLog:        true,
		SyncInterval: o.syncInterval,
		SyncAlways:   o.syncAlways,
	}
	if err := serverSecurity(sopts, o.creds, o.tlsCert, o.tlsKey, o.tlsClientCA); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cluster: embedded server: %w", err)
	}
	srv.SetLoggerV2(&serverLog{l: log.Named("nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
		return nil, errors.New("cluster: the embedded server did not become ready")
	}
	return &embedded{srv: srv, dir: dir, url: srv.ClientURL()}, nil
}

func (e *embedded) close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	os.RemoveAll(e.dir)
}

// serverLog passes the embedded server's log to zap.
type serverLog struct {
	l     *zap.Logger
	fatal chan string // when not nil, receives the first fatal message
}

func (s *serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	s.l.Error(msg)
	if s.fatal != nil {
		select {
		case s.fatal <- msg:
		default:
		}
	}
}
func (s *serverLog) Errorf(format string, v ...any) { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Debugf(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any) {}

// ensureStream creates the task stream, or updates it when this process
// owns the server (own), or else uses it as it is.
func ensureStream(ctx context.Context, js jetstream.JetStream, o *options, own bool) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name:        streamName,
		Subjects:    []string{taskSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      o.maxAge,
		MaxBytes:    o.maxBytes,
		Discard:     jetstream.DiscardNew,
		AllowDirect: true,
		Duplicates:  2 * time.Minute,
		Replicas:    max(o.replicas, 1),
	}
	if own {
		s, err := js.CreateOrUpdateStream(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("cluster: creating the task stream: %w", err)
		}
		return s, nil
	}
	s, err := js.Stream(ctx, streamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, streamName)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: the task stream: %w", err)
	}
	return s, nil
}

// consumerConfig is the durable pull consumer shared by a build's agents.
func consumerConfig(ns string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:           consumerName(ns),
		FilterSubject:     nsSubjects(ns),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           ackWait,
		MaxDeliver:        -1, // agents enforce each chunk's MaxDeliveries
		MaxAckPending:     1 << 16,
		MaxWaiting:        4096,
		InactiveThreshold: 24 * time.Hour,
	}
}

// statusGone reports whether a status put failed because the status
// bucket is gone: it lives in memory, and a server's restart loses it.
func statusGone(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// putStatus puts a status entry; when the bucket is gone, it creates it
// again and puts once more.
func putStatus(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key string, value []byte, ttl time.Duration, replicas int, log *zap.Logger) error {
	_, err := kv.Put(ctx, key, value)
	if err == nil || !statusGone(err) {
		return err
	}
	if _, _, err := ensureStatus(ctx, js, ttl, replicas, false); err != nil {
		return err
	}
	log.Warn("the status bucket was lost (a server restarted?); created it again")
	_, err = kv.Put(ctx, key, value)
	return err
}

// statusYoung reports whether the status bucket was created less than
// ttl ago: a caller's entry missing from it may just not be put again
// yet, so the caller is not known to be dead.
func statusYoung(ctx context.Context, kv jetstream.KeyValue, ttl time.Duration) bool {
	st, err := kv.Status(ctx)
	if err != nil {
		return true
	}
	kvs, ok := st.(*jetstream.KeyValueBucketStatus)
	return ok && time.Since(kvs.StreamInfo().Created) < ttl
}

// ensureStatus opens the status bucket (creating it, or updating its TTL
// when this process owns the server) and returns its TTL.
func ensureStatus(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int, own bool) (jetstream.KeyValue, time.Duration, error) {
	cfg := jetstream.KeyValueConfig{Bucket: statusBucket, TTL: ttl, History: 1, Storage: jetstream.MemoryStorage, Replicas: max(replicas, 1)}
	var kv jetstream.KeyValue
	var err error
	if own {
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	} else {
		kv, err = js.KeyValue(ctx, statusBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, statusBucket)
			}
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: the status bucket: %w", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: the status bucket: %w", err)
	}
	if st.TTL() > 0 {
		ttl = st.TTL()
	}
	return kv, ttl, nil
}
