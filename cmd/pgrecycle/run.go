package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy"
)

// run parses flags, loads the configuration and serves until a signal.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == convertCommand {
		return runConvert(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("pgrecycle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "pgrecycle.toml", "path to the TOML configuration file")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "pgrecycle %s\n", version)
		return 0
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "pgrecycle: %v\n", err)
		return 1
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pgrecycle: log: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	_, envProcs := os.LookupEnv("GOMAXPROCS")
	threads := newThreadSetter(envProcs, log)
	threads.apply(cfg.Listen.WorkerThreads)
	_, envGC := os.LookupEnv("GOGC")
	applyGCPercent(envGC, log)

	// Signals are caught before anything is served, so an early SIGHUP
	// reloads rather than kills.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	srv, err := proxy.New(proxy.Options{Config: cfg, Logger: log, Version: version})
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		fmt.Fprintf(stderr, "pgrecycle: %v\n", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		log.Error("cannot listen", zap.Error(err))
		fmt.Fprintf(stderr, "pgrecycle: %v\n", err)
		return 1
	}
	srv.Serve()
	log.Info("pgrecycle started", zap.String("version", version), zap.String("config", cfg.Path),
		zap.Stringer("addr", addrOrNone{srv}))
	systemd := newSystemdNotifier(os.Getenv("NOTIFY_SOCKET"), log)
	systemd.ready(addrOrNone{srv}.String())

	for {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-srv.Done():
			// SHUTDOWN from the admin console drained and closed it.
			systemd.stopping()
			log.Info("stopped by the admin console")
			return 0
		}
		if sig == syscall.SIGHUP {
			systemd.reloading()
			err := srv.Reload()
			if err != nil {
				log.Error("reload refused; keeping the old configuration", zap.Error(err))
			} else {
				threads.apply(srv.Config().Listen.WorkerThreads)
			}
			systemd.ready(addrOrNone{srv}.String())
			continue
		}
		systemd.stopping()
		log.Info("shutting down", zap.String("signal", sig.String()))
		done := make(chan struct{})
		go func() {
			srv.Shutdown()
			close(done)
		}()
		select {
		case <-done:
		case <-sigs:
			log.Warn("second signal: stopping now")
			srv.Close()
		}
		return 0
	}
}

type addrOrNone struct{ srv *proxy.Server }

func (a addrOrNone) String() string {
	if addr := a.srv.Addr(); addr != nil {
		return addr.String()
	}
	return "none"
}

// newLogger builds the zap logger the configuration asks for.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), level)
	return zap.New(core), nil
}
