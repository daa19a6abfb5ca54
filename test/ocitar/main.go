// Command ocitar writes a single-layer OCI image layout as a tar file, from
// local files, without a container engine. containerd imports it with
// `ctr -n k8s.io images import`; the image name comes from the
// io.containerd.image.name annotation in index.json.
//
//	ocitar -binary bin/sriov-dra -name sriov-dra:v1 -out bin/sriov-dra-image.tar
//	ocitar -name busybox:e2e -file /bin/busybox=/bin/busybox -link /bin/sh=busybox \
//	       -entrypoint /bin/sh -out img.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ocitar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ocitar", flag.ContinueOnError)
	var (
		spec       ImageSpec
		files      listFlag
		links      listFlag
		dirs       listFlag
		env        listFlag
		entrypoint listFlag
		cmd        listFlag
		binary     = fs.String("binary", "", "static binary to put at /usr/local/bin/<name>; also the default entrypoint")
		out        = fs.String("out", "", "output tar path (required)")
	)
	fs.StringVar(&spec.Name, "name", "", "image reference, e.g. sriov-dra:v1 (required); a bare name gets docker.io/library/")
	fs.StringVar(&spec.Arch, "arch", runtime.GOARCH, "image architecture")
	fs.StringVar(&spec.WorkingDir, "workdir", "/", "working directory")
	fs.Int64Var(&spec.Created, "created", 0, "creation time, Unix seconds (0 = the epoch, reproducible)")
	fs.Var(&files, "file", "SRC=DST: copy a host file into the image (repeatable)")
	fs.Var(&links, "link", "PATH=TARGET: a symlink in the image (repeatable)")
	fs.Var(&dirs, "dir", "PATH[=MODE]: an empty directory, octal mode (default 0755; repeatable)")
	fs.Var(&env, "env", "KEY=VALUE in the image config (repeatable)")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable, in order)")
	fs.Var(&cmd, "cmd", "cmd argument (repeatable, in order)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	if *binary != "" {
		dst := "/usr/local/bin/" + baseName(*binary)
		files = append(files, *binary+"="+dst)
		if len(entrypoint) == 0 {
			entrypoint = listFlag{dst}
		}
	}
	for _, f := range files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok || src == "" || dst == "" {
			return fmt.Errorf("-file %q: want SRC=DST", f)
		}
		spec.Entries = append(spec.Entries, Entry{Path: dst, Source: src})
	}
	for _, l := range links {
		p, target, ok := strings.Cut(l, "=")
		if !ok || p == "" || target == "" {
			return fmt.Errorf("-link %q: want PATH=TARGET", l)
		}
		spec.Entries = append(spec.Entries, Entry{Path: p, LinkTarget: target})
	}
	for _, d := range dirs {
		p, mode, err := parseDir(d)
		if err != nil {
			return err
		}
		spec.Entries = append(spec.Entries, Entry{Path: p, Dir: true, Mode: mode})
	}
	spec.Env = env
	spec.Entrypoint = entrypoint
	spec.Cmd = cmd

	f, err := os.CreateTemp(dirOf(*out), ".ocitar-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := Write(f, spec); err != nil {
		f.Close()
		return fmt.Errorf("write image %s: %w", spec.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), *out)
}

func baseName(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		if i == 0 {
			return "/"
		}
		return p[:i]
	}
	return "."
}

func parseDir(d string) (string, int64, error) {
	p, m, hasMode := strings.Cut(d, "=")
	if p == "" {
		return "", 0, fmt.Errorf("-dir %q: empty path", d)
	}
	if !hasMode {
		return p, 0o755, nil
	}
	mode, err := strconv.ParseInt(m, 8, 64)
	if err != nil || mode < 0 || mode > 0o7777 {
		return "", 0, fmt.Errorf("-dir %q: mode %q is not an octal permission", d, m)
	}
	return p, mode, nil
}
