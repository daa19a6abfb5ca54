package cliout

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type sample struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
}

func TestWrite(t *testing.T) {
	v := sample{Name: "a", Count: 2}
	table := func(w io.Writer) error { _, err := io.WriteString(w, "NAME COUNT\na 2\n"); return err }
	tests := []struct {
		format  string
		want    string
		wantErr string
	}{
		{format: JSON, want: "{\n  \"name\": \"a\",\n  \"count\": 2\n}\n"},
		{format: YAML, want: "count: 2\nname: a\n"},
		{format: Table, want: "NAME COUNT\na 2\n"},
		{format: "wide", wantErr: `output format "wide": want table, json or yaml`},
		{format: "", wantErr: `output format "": want table, json or yaml`},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			err := Write(&b, tt.format, "sample", v, table)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Write err = %v, want %q", err, tt.wantErr)
				}
				if b.Len() != 0 {
					t.Errorf("wrote %q on a bad format", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("Write = %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestWriteEncodeError(t *testing.T) {
	for _, format := range []string{JSON, YAML} {
		err := Write(io.Discard, format, "sample", map[string]any{"f": func() {}}, nil)
		if err == nil || !strings.Contains(err.Error(), "encode sample as "+strings.ToUpper(format)) {
			t.Errorf("%s: err = %v, want it to name what was encoded", format, err)
		}
	}
}

func TestTableError(t *testing.T) {
	boom := errors.New("boom")
	if err := Write(io.Discard, Table, "sample", nil, func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the table's error", err)
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		format string
		ok     bool
	}{{Table, true}, {JSON, true}, {YAML, true}, {"wide", false}, {"", false}, {"JSON", false}} {
		err := Check(tt.format)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.format, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), `--output "`+tt.format+`"`) {
			t.Errorf("Check(%q) = %v, want it to name the flag", tt.format, err)
		}
	}
}
