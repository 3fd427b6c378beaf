// Package deploy holds no code: its tests check the deployable artefacts.
//
// dockerfile_test.go parses the apps' Dockerfile (one, with the app as a
// build argument), checks the stages, the check of the argument, the user,
// the entrypoint and the copied binary, lays out the build context that
// .dockerignore leaves, and runs its go build line in it for each app to
// check that the result is a static binary.
//
// manifests_test.go decodes every document under deploy/ strictly into the
// Kubernetes and Dapr API types (an unknown field or kind fails), runs Dapr's
// sidecar injector on the Deployments offline, and checks the references
// between the manifests, the apps' own configuration and components/.
package deploy
