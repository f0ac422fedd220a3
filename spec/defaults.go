package spec

import (
	"reflect"
	"strings"
)

// applyDefaults fills absent values. It runs after validation, so defaults
// never hide a user's mistake, and the result is what plan shows.
func applyDefaults(n *Node) {
	if n.Containerd == nil && n.Components.Containerd != nil {
		n.Containerd = &Containerd{}
	}
	// The CNI plugins component brings a bridge network to the node's CRI,
	// and only to it: both would write the same conflist.
	if c := n.Containerd; c != nil && c.CNI.Network == "" && n.Components.CNI != nil && !n.DockerCRI() {
		c.CNI.Network = "bridge"
	}
	if n.DockerCRI() {
		n.Docker.CRI.CNI.Network = dockerNetwork(n)
	}
	if k := n.Components.Kata; k != nil && n.Containerd != nil {
		// A kata handler without configPath gets the configuration the
		// component installs, not Kata's own search path (/etc, /usr/share),
		// which the static release does not populate.
		for name, rt := range n.Containerd.Runtimes {
			if rt.Type == KataRuntimeType && rt.ConfigPath == "" {
				rt.ConfigPath = KataConfigPath(k)
				n.Containerd.Runtimes[name] = rt
			}
		}
	}
	for i := range n.Files {
		f := &n.Files[i]
		if f.Mode == "" {
			switch f.Type {
			case "", "file":
				f.Mode = "0644"
			case "directory":
				f.Mode = "0755"
			}
		}
	}
	for i := range n.Downloads {
		if d := &n.Downloads[i]; d.Path != "" && d.Mode == "" {
			d.Mode = "0644"
		}
	}
	tagDefaults(reflect.ValueOf(n).Elem())
}

// tagDefaults sets every zero string or *bool field that has a default tag.
func tagDefaults(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			tagDefaults(v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := v.Field(i)
			def, ok := t.Field(i).Tag.Lookup("default")
			switch {
			case ok && f.Kind() == reflect.String && f.String() == "":
				f.SetString(def)
			case ok && f.Kind() == reflect.Pointer && f.IsNil() && f.Type().Elem().Kind() == reflect.Bool:
				b := strings.EqualFold(def, "true")
				f.Set(reflect.ValueOf(&b))
			default:
				tagDefaults(f)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			tagDefaults(v.Index(i))
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			tagDefaults(e)
			v.SetMapIndex(k, e)
		}
	}
}
