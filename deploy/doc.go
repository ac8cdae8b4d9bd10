// Package deploy holds no code: its tests check the deployment artefacts
// against each other and against the relay — the Dockerfile runs the same
// build script CI runs, the compose configuration loads, and the rendered
// Helm chart (from .ci/deploy-check.sh) keeps its probes, hardening and
// configuration mount.
package deploy
