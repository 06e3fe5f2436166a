# A derivation that needs nothing but /bin/sh: each distinct `n` is a distinct store path.
{ n ? "0" }:
derivation {
  name = "demo-${n}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "export PATH=/usr/bin:/bin; echo ${n} > $out" ];
}
