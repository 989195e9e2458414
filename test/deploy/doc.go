// Package deploy holds the tests of deploy/: the Kubernetes manifests,
// decoded strictly into the API's types and checked for the invariants
// spooky relies on, and the container image, built and run where a
// container tool can.
package deploy
