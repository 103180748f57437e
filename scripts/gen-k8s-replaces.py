#!/usr/bin/env python3
"""Write the `replace` block of sandbox/cluster/go.mod from the pinned k8s.io/kubernetes release's own go.mod.

k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces them
with ./staging/src/... paths; a dependency's replace directives are ignored by the Go toolchain, so the module that
depends on it must pin each staging module to the tag published with the release (k8s.io/kubernetes v1.X.Y ->
k8s.io/<module> v0.X.Y). This reads the release's go.mod through `go mod download -json` (module proxy or cache)
and writes that block between its BEGIN/END markers; nothing in it is typed by hand.

    scripts/gen-k8s-replaces.py            rewrite the block for the release go.mod requires
    scripts/gen-k8s-replaces.py --check    exit 1 if the block is not what the release's go.mod implies
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

GOMOD = Path(__file__).resolve().parent.parent / "sandbox" / "cluster" / "go.mod"
BEGIN = "// BEGIN generated staging replaces"
END = "// END generated staging replaces"


def pinned_release(gomod: str) -> str:
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v1\.\d+\.\d+\S*)", gomod, re.MULTILINE)
    if not match:
        raise SystemExit(f"{GOMOD}: no k8s.io/kubernetes requirement")
    return match.group(1)


def release_gomod(version: str) -> str:
    """The go.mod of the release, fetched from outside any module (cwd /) so ours does not interfere."""
    out = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], check=True,
                         capture_output=True, text=True, cwd="/").stdout  # fmt: skip
    info = json.loads(out)
    if info.get("Error"):
        raise SystemExit(info["Error"])
    return Path(info["GoMod"]).read_text(encoding="utf-8")


def block(version: str) -> str:
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)(.*)", version)
    if not match:
        raise SystemExit(f"unexpected k8s.io/kubernetes version {version}")
    staging = f"v0.{match.group(1)}.{match.group(2)}{match.group(3)}"
    found = re.findall(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\./staging/\S+\s*$", release_gomod(version), re.MULTILINE)
    lines = [BEGIN, f"// from k8s.io/kubernetes@{version} go.mod by scripts/gen-k8s-replaces.py; do not edit",
             "replace ("]  # fmt: skip
    lines += [f"\t{module} => {module} {staging}" for module in sorted(set(found))]
    lines += [")", END]
    return "\n".join(lines) + "\n"


def main() -> int:
    current = GOMOD.read_text(encoding="utf-8")
    wanted = block(pinned_release(current))
    rest = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", "", current, flags=re.DOTALL).rstrip("\n")
    result = rest + "\n\n" + wanted
    if "--check" in sys.argv[1:]:
        if result != current:
            print(f"{GOMOD}: the staging replace block differs from the release's go.mod; run {sys.argv[0]}")
            return 1
        return 0
    GOMOD.write_text(result, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
