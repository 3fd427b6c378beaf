package recordstore

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	proto "github.com/dapr/dapr/pkg/proto/components/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/logging"
)

// Dapr's pluggable components: daprd lists the Unix sockets in this folder
// at start-up (DAPR_COMPONENTS_SOCKETS_FOLDER, else the default), asks each
// for its services through gRPC reflection, and registers a state store
// service under the socket's name: records.sock is component type
// state.records (dapr pkg/components/pluggable/discovery.go).
const (
	SocketsFolderEnv     = "DAPR_COMPONENTS_SOCKETS_FOLDER"
	DefaultSocketsFolder = "/tmp/dapr-components-sockets"
	// Type is the component's spec.type when served as records.sock.
	Type = "state.records"
)

// SocketPath is where the component serves in the folder daprd reads
// (getenv(SocketsFolderEnv), else DefaultSocketsFolder).
func SocketPath(getenv func(string) string) string {
	dir := getenv(SocketsFolderEnv)
	if dir == "" {
		dir = DefaultSocketsFolder
	}
	return filepath.Join(dir, "records.sock")
}

// Run is the recordstore program: it serves the state store on its Unix
// socket until ctx is done, then stops serving and removes the socket.
// daprd must start after the socket exists (it looks once).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &cli.Env{Getenv: getenv}
	var socket, logLevel, logFormat string
	fs := cli.NewFlagSet("recordstore", "A Dapr pluggable state store for the subscriber's processed-order records: a\nmany-item save of first-write records is one Redis script, not two round trips\nper record. Serves on a Unix socket that daprd finds at start-up; Redis comes\nfrom the component's metadata (components/records/).", stderr)
	fs.StringVar(&socket, "socket", SocketPath(getenv), "the Unix socket to serve on; daprd registers its name without .sock as state.<name> [DAPR_COMPONENTS_SOCKETS_FOLDER/records.sock]")
	fs.StringVar(&logLevel, "log-level", env.Str(appenv.LogLevel, "info"), "debug, info, warn or error [LOG_LEVEL]")
	fs.StringVar(&logFormat, "log-format", env.Str(appenv.LogFormat, ""), "text or json; default: text on a terminal [LOG_FORMAT]")
	if err := cli.Parse(fs, args); err != nil {
		return err // flag.ErrHelp after -h: cli.Main exits 0
	}
	if env.Err != nil {
		return env.Err
	}
	log := logging.New(stdout, logFormat, logLevel)
	lis, err := Listen(socket)
	if err != nil {
		return err
	}
	srv := &Server{InitFile: InitFile(socket)}
	defer srv.Close()
	restored, err := srv.Restore()
	if err != nil {
		return err
	}
	if restored {
		log.Info("Record store restored the metadata of daprd's Init, as daprd does not call Init again after a restart", "file", srv.InitFile)
	}
	g := NewGRPCServer(srv)
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	log.Info("Record store serving", "socket", socket, "type", Type)
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", socket, err)
	case <-ctx.Done():
	}
	g.GracefulStop() // removes the socket (the listener unlinks it on close)
	log.Info("Record store stopped", "socket", socket)
	return nil
}

// InitFile is where the store serving on socket keeps Init's metadata: in
// a folder of its own inside the sockets folder (daprd looks at every file
// there and warns about one that is not a socket, but skips folders).
func InitFile(socket string) string {
	return filepath.Join(filepath.Dir(socket), ".recordstore", filepath.Base(socket)+".init")
}

// Listen listens on the Unix socket path, replacing a socket left by an
// earlier run (a path that is not a socket is an error), in a folder it
// creates if need be.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return lis, nil
}

// NewGRPCServer is a gRPC server with srv as its state store and the
// reflection service daprd's discovery asks.
func NewGRPCServer(srv *Server) *grpc.Server {
	g := grpc.NewServer()
	proto.RegisterStateStoreServer(g, srv)
	reflection.Register(g)
	return g
}
