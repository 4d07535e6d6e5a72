package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/slipway-net/slipway/config"
)

func TestListFlagReplacesConfigThenAppends(t *testing.T) {
	fromFile, err := config.ParsePublish("8080:80")
	if err != nil {
		t.Fatal(err)
	}
	rules := []config.PublishRule{fromFile}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.Var(&listValue[config.PublishRule]{p: &rules, parse: config.ParsePublish, typ: "rule"}, "publish", "")
	if err := fs.Parse([]string{"--publish", "2222:22", "--publish", "5000:5000/udp"}); err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].HostPort != 2222 || rules[1].Proto != "udp" {
		t.Fatalf("rules %v, want the two from the flags only", rules)
	}
	if got, want := fs.Lookup("publish").Value.String(), rules[0].String()+","+rules[1].String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if err := fs.Parse([]string{"--publish", "nonsense"}); err == nil {
		t.Fatal("a bad rule was accepted")
	}
}
