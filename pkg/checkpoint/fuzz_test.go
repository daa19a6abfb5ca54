package checkpoint

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary file contents to the loader: it must never
// panic, must report anything it cannot trust as a *CorruptError, and what
// it accepts must survive a save and reload unchanged.
func FuzzLoad(f *testing.F) {
	good, err := encode(claims{Claims: map[string]entry{"u1": {Devices: []string{"0000-3b-00-2"}, Done: true}}, Next: 2}, 1, "boot-1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":1,"dataVersion":1,"bootID":"b","checksum":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","data":{}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(""))
	root := fakeRoot(f, "boot-1")
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		s, err := Open[claims](dir, "state.json", Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.Path(), content, 0o600); err != nil {
			t.Fatal(err)
		}
		v, info, err := s.Load()
		if err != nil {
			if ce := (*CorruptError)(nil); !errors.As(err, &ce) {
				t.Fatalf("Load error %v is not a *CorruptError", err)
			}
			return
		}
		if !info.Exists {
			t.Fatal("Load accepted a file but says it does not exist")
		}
		if err := s.Save(v); err != nil {
			t.Fatalf("Save of accepted state: %v", err)
		}
		v2, _, err := s.Load()
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed the state: %s -> %s", fmt.Sprint(v), fmt.Sprint(v2))
		}
	})
}
