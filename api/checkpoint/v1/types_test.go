package v1

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Every field of the document has an explicit JSON name: a Go field
// renamed in a refactoring cannot change the file.
func TestEveryFieldHasAnExplicitJSONName(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || f.Anonymous {
				t.Errorf("%s.%s: no explicit JSON name (tag %q)", path, f.Name, f.Tag.Get("json"))
			}
			walk(path+"."+f.Name, f.Type)
		}
	}
	walk("Checkpoint", reflect.TypeOf(Checkpoint{}))
	if len(seen) < 10 {
		t.Errorf("walked %d types, expected the whole document", len(seen))
	}
}

// The schema imports nothing of the project: no other package's type can
// leak into the file format.
func TestSchemaImportsNoProjectPackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(p, ".") {
				t.Errorf("%s imports %s: the schema uses the standard library only", name, p)
			}
		}
	}
}
