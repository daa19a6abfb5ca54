package kubeletserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	drahealthv1 "k8s.io/kubelet/pkg/apis/dra-health/v1"
	drahealthv1alpha1 "k8s.io/kubelet/pkg/apis/dra-health/v1alpha1"
	drapbv1 "k8s.io/kubelet/pkg/apis/dra/v1"
	drapbv1beta1 "k8s.io/kubelet/pkg/apis/dra/v1beta1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// Config says where and for whom the server listens.
type Config struct {
	// DriverName is the DRA driver's name (required).
	DriverName string
	// NodeName is the node's name; it only labels the log.
	NodeName string
	// RegistryDir is kubelet's plugins_registry dir; "" is
	// DefaultRegistryDir.
	RegistryDir string
	// PluginDir is the driver's dir for the DRA socket and the metadata
	// files; "" is DefaultPluginDir(DriverName).
	PluginDir string
	// PodUID, when set, turns rolling updates on: socket names carry it
	// (RegistrarSocketFile, PluginSocketFile) so two daemon pods can serve
	// side by side, and Serialize locks LockFile(PluginDir) instead of a
	// mutex.
	PodUID types.UID
	// Serialize lets one Prepare or Unprepare into the plugin at a time.
	Serialize bool
	// Interceptor, if set, sees every unary call on both sockets
	// (GetInfo and NotifyRegistrationStatus included), after the server
	// put the call's logger into the context.
	Interceptor grpc.UnaryServerInterceptor
	// Claims fetches the claims kubelet asks to prepare (required).
	Claims ClaimGetter
	// Metadata turns device metadata files on; nil leaves them off.
	Metadata *MetadataConfig
	// HandleError is told when a gRPC server stops serving on its own
	// (the sockets are then dead); nil only logs it.
	HandleError func(ctx context.Context, err error, msg string)
}

// MetadataConfig configures the device metadata files (KEP-5304).
type MetadataConfig struct {
	// Versions are the metadata API versions each file carries, one JSON
	// object per version in this order (required; see metadata.go for
	// the known ones).
	Versions []schema.GroupVersion
	// CDIDir is where the metadata's CDI specs go; "" is DefaultCDIDir.
	CDIDir string
	// WriteFile writes a metadata file or CDI spec; nil writes through a
	// temporary file renamed over the target.
	WriteFile func(name string, data []byte, perm os.FileMode) error
}

// Server serves kubelet on the registration and DRA sockets.
type Server struct {
	cfg        Config
	plugin     Plugin
	logger     klog.Logger
	regPath    string
	pluginPath string
	serial     callSerializer
	meta       *metadataWriter
	requests   atomic.Int64

	reg *registration

	mu      sync.Mutex
	servers []*grpc.Server // plugin first, registrar second
	paths   []string
	wg      sync.WaitGroup
	stopped bool
	cancel  context.CancelFunc
}

// Start listens on the DRA socket, then on the registration socket (so
// kubelet finds the plugin only once it can be called), and serves until
// ctx ends or Stop is called. Stale socket files of an earlier run are
// replaced.
func Start(ctx context.Context, plugin Plugin, cfg Config) (*Server, error) {
	if cfg.DriverName == "" {
		return nil, errors.New("kubelet server: DriverName is required")
	}
	if cfg.Claims == nil {
		return nil, errors.New("kubelet server: Claims is required")
	}
	if plugin == nil {
		return nil, errors.New("kubelet server: plugin is required")
	}
	if cfg.RegistryDir == "" {
		cfg.RegistryDir = DefaultRegistryDir
	}
	if cfg.PluginDir == "" {
		cfg.PluginDir = DefaultPluginDir(cfg.DriverName)
	}
	s := &Server{
		cfg:        cfg,
		plugin:     plugin,
		logger:     klog.LoggerWithValues(klog.FromContext(ctx), "driver", cfg.DriverName),
		regPath:    filepath.Join(cfg.RegistryDir, RegistrarSocketFile(cfg.RegistryDir, cfg.DriverName, cfg.PodUID)),
		pluginPath: filepath.Join(cfg.PluginDir, PluginSocketFile(cfg.PodUID)),
		serial:     callSerializer{on: cfg.Serialize},
	}
	if cfg.PodUID != "" {
		s.serial.path = LockFile(cfg.PluginDir)
	}
	if m := cfg.Metadata; m != nil {
		mw, err := newMetadataWriter(cfg.DriverName, cfg.PluginDir, m)
		if err != nil {
			return nil, fmt.Errorf("kubelet server: device metadata: %w", err)
		}
		s.meta = mw
	}
	s.reg = &registration{
		info: &registerapi.PluginInfo{
			Type:     registerapi.DRAPlugin,
			Name:     cfg.DriverName,
			Endpoint: s.pluginPath,
			// For DRA plugins kubelet reads the gRPC services the
			// endpoint offers from this field and picks the newest.
			SupportedVersions: []string{
				drapbv1.DRAPluginService, drapbv1beta1.DRAPluginService,
				drahealthv1.DRAResourceHealthService, drahealthv1alpha1.DRAResourceHealthService,
			},
		},
	}

	dra := &draService{s: s}
	if err := s.serve(s.pluginPath, "DRA plugin", func(g *grpc.Server) {
		drapbv1.RegisterDRAPluginServer(g, dra)
		drapbv1beta1.RegisterDRAPluginServer(g, drapbv1beta1.V1ServerWrapper{DRAPluginServer: dra})
		h := &healthService{s: s}
		drahealthv1.RegisterDRAResourceHealthServer(g, h)
		drahealthv1alpha1.RegisterDRAResourceHealthServer(g, drahealthv1.V1ServerWrapper{Server: h})
	}); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.serve(s.regPath, "registration", func(g *grpc.Server) {
		registerapi.RegisterRegistrationServer(g, s.reg)
	}); err != nil {
		s.Stop()
		return nil, err
	}
	stopCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.wg.Go(func() {
		<-stopCtx.Done()
		s.stop()
	})
	s.logger.V(2).Info("Serving kubelet", "registrationSocket", s.regPath, "pluginSocket", s.pluginPath, "node", cfg.NodeName, "rollingUpdate", cfg.PodUID != "")
	return s, nil
}

// RegistrarSocket is the registration socket's path.
func (s *Server) RegistrarSocket() string { return s.regPath }

// PluginSocket is the DRA socket's path.
func (s *Server) PluginSocket() string { return s.pluginPath }

// RegistrationStatus is kubelet's last NotifyRegistrationStatus, nil
// before the first.
func (s *Server) RegistrationStatus() *registerapi.RegistrationStatus {
	return s.reg.lastStatus()
}

// Stop stops serving (calls in flight are cancelled) and removes the
// sockets, the registration socket first so kubelet drops the plugin
// before its endpoint goes away. It may be called more than once.
func (s *Server) Stop() {
	if s == nil {
		return
	}
	s.stop()
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

func (s *Server) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	servers, paths := s.servers, s.paths
	s.mu.Unlock()
	for i := len(servers) - 1; i >= 0; i-- {
		servers[i].Stop()
		if err := os.Remove(paths[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.logger.Error(err, "Cannot remove the socket", "socket", paths[i])
		}
	}
	s.logger.V(2).Info("Stopped serving kubelet")
}

// serve listens on the unix socket path and serves the services
// register adds.
func (s *Server) serve(path, what string, register func(*grpc.Server)) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kubelet server: remove the stale %s socket: %w", what, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("kubelet server: listen on the %s socket: %w", what, err)
	}
	// Removing the file ourselves after Stop keeps the order of removal
	// ours; the listener must not unlink it when it is closed.
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	unary := []grpc.UnaryServerInterceptor{s.logUnary}
	if s.cfg.Interceptor != nil {
		unary = append(unary, s.cfg.Interceptor)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(s.logStream))
	register(g)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ln.Close()
		_ = os.Remove(path)
		return errors.New("kubelet server: stopped while starting")
	}
	s.servers = append(s.servers, g)
	s.paths = append(s.paths, path)
	s.mu.Unlock()
	s.wg.Go(func() {
		// Stop before Serve began is ErrServerStopped: no failure.
		if err := g.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			msg := fmt.Sprintf("the %s gRPC server on %s stopped", what, path)
			if h := s.cfg.HandleError; h != nil {
				h(klog.NewContext(context.Background(), s.logger), err, msg)
			} else {
				s.logger.Error(err, msg)
			}
		}
	})
	return nil
}

// grpcVerbosity is the log level of every call with its request and
// response (which can be long).
const grpcVerbosity = 6

// callLogger is the logger of one call: the server's, with the method and
// a request number that ties its lines together.
func (s *Server) callLogger(method string) klog.Logger {
	return klog.LoggerWithValues(s.logger, "method", method, "requestID", s.requests.Add(1))
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	logger := s.callLogger(info.FullMethod)
	ctx = klog.NewContext(ctx, logger)
	logger.V(grpcVerbosity).Info("gRPC call", "request", req)
	resp, err := handler(ctx, req)
	if err != nil {
		logger.Error(err, "gRPC call failed")
	} else {
		logger.V(grpcVerbosity).Info("gRPC call done", "response", resp)
	}
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	logger := s.callLogger(info.FullMethod)
	logger.V(grpcVerbosity).Info("gRPC stream opened")
	err := handler(srv, &loggedStream{ServerStream: ss, ctx: klog.NewContext(ss.Context(), logger)})
	if err != nil && ss.Context().Err() == nil {
		logger.Error(err, "gRPC stream failed")
	} else {
		logger.V(grpcVerbosity).Info("gRPC stream closed", "err", err)
	}
	return err
}

// loggedStream carries the call's logger in its context.
type loggedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (l *loggedStream) Context() context.Context { return l.ctx }

func (l *loggedStream) SendMsg(m any) error {
	klog.FromContext(l.ctx).V(grpcVerbosity).Info("gRPC stream message", "message", m)
	return l.ServerStream.SendMsg(m)
}

// registration answers kubelet's plugin watcher.
type registration struct {
	registerapi.UnsafeRegistrationServer
	info   *registerapi.PluginInfo
	mu     sync.Mutex
	status *registerapi.RegistrationStatus
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return r.info, nil
}

func (r *registration) NotifyRegistrationStatus(ctx context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
	if !st.PluginRegistered {
		return nil, fmt.Errorf("kubelet did not register DRA driver %s (endpoint %s): %s", r.info.Name, r.info.Endpoint, st.Error)
	}
	klog.FromContext(ctx).V(2).Info("Kubelet registered the driver", "endpoint", r.info.Endpoint)
	return &registerapi.RegistrationStatusResponse{}, nil
}

func (r *registration) lastStatus() *registerapi.RegistrationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}
