#!/usr/bin/env bash
# The test command: install what is missing, then lint, typecheck and run the whole suite against
# the real Temporal dev server, moto and the emulators (started by the suite itself on loopback),
# on each supported Node major (docs/DEVELOPMENT.md "Runtimes"):
#   1. the machine's Node: tsc, ESLint, Prettier and the whole suite;
#   2. Node 24 (the Docker image's runtime): the end-to-end smoke set below (ROLLGATE_NODE24_LEG=full:
#      the whole suite again; CI would then take ~45 min on the 2-core machine, past its budget, so
#      the default is the smoke set: every unit test plus one file of each end-to-end area);
#   3. Node 22: a smoke leg (tsc, the unit tests, the lint fence, replay, one end-to-end rollout).
# A leg whose major is the machine's is not repeated.
#
#   scripts/test.sh                      everything above (CI)
#   scripts/test.sh test/x.test.ts ...   checks + only those test files, on the machine's Node
#   scripts/test.sh --node 24 [FILES]    only jest, on Node 24 (22: the smoke leg unless FILES)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test-tools
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

JEST=(node node_modules/jest/bin/jest.js --runInBand)
SMOKE=('\.unit\.test\.ts$' test/lint-fence.test.ts test/replay.test.ts test/happy-path.test.ts)
# Node 24: the smoke set plus one file per end-to-end area (both clouds, a breach, a crash, the runner, the fence, the codec).
SMOKE24=("${SMOKE[@]}" test/rollback.test.ts test/cross-cloud.test.ts test/crash-resume.test.ts test/runner.test.ts test/fence.test.ts test/codec.test.ts)

leg() {
  local major=$1 started=$SECONDS
  shift
  echo "test: Node $major: $*" >&2
  scripts/with-node.sh "$major" node --version >&2
  scripts/with-node.sh "$major" "$@"
  echo "test: Node $major leg took $((SECONDS - started)) s" >&2
}
node22() {
  leg 22 node node_modules/typescript/bin/tsc -p tsconfig.json --noEmit
  if [ $# -gt 0 ]; then leg 22 "${JEST[@]}" "$@"; else leg 22 "${JEST[@]}" "${SMOKE[@]}"; fi
}

if [ "${1:-}" = "--node" ]; then
  major="${2:?--node needs a major version: 24 or 22}"
  shift 2
  case "$major" in
    24) leg 24 "${JEST[@]}" "$@" ;;
    22) node22 "$@" ;;
    *) echo "test: no Node $major leg (24 or 22)" >&2 && exit 2 ;;
  esac
  exit 0
fi

npx tsc -p tsconfig.json --noEmit
npx eslint .
npx prettier --check . >/dev/null || { echo "prettier: run npx prettier --write ." >&2; exit 1; }
started=$SECONDS
npx jest --runInBand "$@"
machine=$(node -p 'process.versions.node.split(".")[0]')
echo "test: Node $machine (machine) leg took $((SECONDS - started)) s" >&2

# Only the full run (no file arguments) goes on to the other runtimes.
[ $# -eq 0 ] || exit 0
case "${ROLLGATE_NODE24_LEG:-smoke}" in
  full) [ "$machine" = 24 ] || leg 24 "${JEST[@]}" ;;
  smoke) [ "$machine" = 24 ] || leg 24 "${JEST[@]}" "${SMOKE24[@]}" ;;
  *) echo "test: ROLLGATE_NODE24_LEG is full or smoke" >&2 && exit 2 ;;
esac
[ "$machine" = 22 ] || node22
