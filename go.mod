module github.com/nodeprov/nodeprov

go 1.26.8

require (
	github.com/pelletier/go-toml/v2 v2.4.3
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.49.0
)
