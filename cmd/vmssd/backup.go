package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmssd/vmssd/internal/server"
)

// backupCmd is "vmssd backup --out FILE [--data-dir DIR]".
func backupCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir(), "data directory to back up (its vmssd may be running)")
	out := fs.String("out", "", "backup file to write (tar.gz)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("backup: --out is required")
	}
	// Written beside its final name, then renamed: a failed backup never
	// leaves a file that looks complete.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := server.Backup(ctx, *dataDir, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	fmt.Printf("vmssd: backup of %s written to %s\n", *dataDir, *out)
	return nil
}

// restoreCmd is "vmssd restore --from FILE [--data-dir DIR]".
func restoreCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir(), "data directory to restore into: absent or empty")
	from := fs.String("from", "", "backup file to restore (written by vmssd backup)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("restore: --from is required")
	}
	f, err := os.Open(*from)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := server.Restore(ctx, *dataDir, f); err != nil {
		return err
	}
	fmt.Printf("vmssd: %s restored into %s; start vmssd with --data-dir %s\n", *from, *dataDir, *dataDir)
	return nil
}
