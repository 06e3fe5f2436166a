# Something shaped like a NixOS system: a store path with an activation script.
{ name ? "example" }:
derivation {
  name = "system-${name}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" ''
    export PATH=/usr/bin:/bin
    mkdir -p $out/bin
    printf '#!/bin/sh\necho "activating %s"\n' "$out" > $out/bin/switch-to-configuration
    chmod +x $out/bin/switch-to-configuration
  '' ];
}
