package testutil

import (
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// EnvRoundTrip checks an app's Config against its own rendering: every
// field of all differs from def (but those named in unset), and for both
// ParseConfig(nil, Env()) gives the Config back — so a setting added
// without its variable, or rendered wrong, fails the app's unit tests.
func EnvRoundTrip[C any](t *testing.T, def, all C, env func(C) []string, parse func([]string, func(string) string, io.Writer) (C, error), unset ...string) {
	t.Helper()
	var same []string
	for _, f := range equalFields(reflect.ValueOf(all), reflect.ValueOf(def), "") {
		if !slices.Contains(unset, f) {
			same = append(same, f)
		}
	}
	if len(same) > 0 {
		t.Fatalf("fields equal to their default in the all-set config (set them, so the round trip covers them): %v", same)
	}
	for name, c := range map[string]C{"defaults": def, "every field set": all} {
		vars := map[string]string{}
		for _, kv := range env(c) {
			k, v, _ := strings.Cut(kv, "=")
			if _, dup := vars[k]; dup {
				t.Fatalf("%s: %s rendered twice", name, k)
			}
			vars[k] = v
		}
		got, err := parse(nil, func(k string) string { return vars[k] }, io.Discard)
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("%s: ParseConfig(nil, Env()) = %+v, %v; want %+v", name, got, err, c)
		}
	}
}

// equalFields lists the leaf fields of structs a and b that are equal, as
// dotted paths.
func equalFields(a, b reflect.Value, path string) []string {
	if a.Kind() != reflect.Struct {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return []string{path}
		}
		return nil
	}
	var same []string
	for i := range a.NumField() {
		same = append(same, equalFields(a.Field(i), b.Field(i), strings.TrimPrefix(path+"."+a.Type().Field(i).Name, "."))...)
	}
	return same
}
