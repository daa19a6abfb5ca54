// Package cliout prints what a CLI command reports as a table, JSON or
// YAML, the three --output formats of `sriov-dra inventory` and
// `sriov-dra devices`.
package cliout

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// The output formats.
const (
	Table = "table"
	JSON  = "json"
	YAML  = "yaml"
)

// Check reports whether format is one of the output formats; the error
// names the --output flag.
func Check(format string) error {
	switch format {
	case Table, JSON, YAML:
		return nil
	}
	return fmt.Errorf("--output %q: want %s, %s or %s", format, Table, JSON, YAML)
}

// Write prints v in format: indented JSON with a final newline, YAML, or
// for Table whatever table writes. what names v in encoding errors.
func Write(w io.Writer, format, what string, v any, table func(io.Writer) error) error {
	switch format {
	case JSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode %s as JSON: %w", what, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s as YAML: %w", what, err)
		}
		_, err = w.Write(b)
		return err
	case Table:
		return table(w)
	}
	return fmt.Errorf("output format %q: want %s, %s or %s", format, Table, JSON, YAML)
}
