module github.com/posthorn/posthorn

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/miekg/dns v1.1.73
	golang.org/x/crypto v0.59.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.50.0
	golang.org/x/term v0.48.0
)

require golang.org/x/text v0.44.0 // indirect
