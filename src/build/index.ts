// The build side of nix-hold, loaded only when there is a build to run: holding existing paths
// never pays for loading execa.
export { prepareBuild, type BuildCommand } from './command.js'
export { runBuild, type BuildResult } from './run.js'
