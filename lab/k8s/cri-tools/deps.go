//go:build tools

// critest is cri-tools' test binary (go test -c sigs.k8s.io/cri-tools/cmd/critest):
// these imports keep the packages it and its tests need in go.mod and go.sum.
package deps

import (
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/gomega"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
)
