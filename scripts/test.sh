#!/usr/bin/env bash
# The test command: install what is missing, then lint, typecheck and run the whole suite against
# the real Temporal dev server, moto and the emulators (started by the suite itself on loopback),
# on each supported Node major (docs/DEVELOPMENT.md "Runtimes"):
#   1. the machine's Node: tsc, ESLint, Prettier and the whole suite;
#   2. Node 24 (the Docker image's runtime): the whole suite again (ROLLGATE_NODE24_LEG=smoke: every
#      unit test plus one file of each end-to-end area);
#   3. Node 22: a smoke leg (tsc, the unit tests, the lint fence, replay, one end-to-end rollout).
# A leg whose major is the machine's is not repeated. Jest runs ROLLGATE_TEST_WORKERS test files at
# once (default 3; 1 = --runInBand), sharing the leg's one dev server and moto: the suite mostly
# waits on bakes, timers and polls (about a third of the 2 cores busy when run one file at a time).
#
#   scripts/test.sh                      everything above (CI)
#   scripts/test.sh test/x.test.ts ...   checks + only those test files, on the machine's Node
#   scripts/test.sh --node 24 [FILES]    only jest, on Node 24 (22: the smoke leg unless FILES)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test-tools
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

WORKERS="${ROLLGATE_TEST_WORKERS:-3}"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || { echo "test: ROLLGATE_TEST_WORKERS is a whole number of at least 1, got \"$WORKERS\"" >&2; exit 2; }
if [ "$WORKERS" = 1 ]; then PARALLEL=(--runInBand); else PARALLEL=(--maxWorkers="$WORKERS"); fi
JEST=(node node_modules/jest/bin/jest.js "${PARALLEL[@]}")
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
npx jest "${PARALLEL[@]}" "$@"
machine=$(node -p 'process.versions.node.split(".")[0]')
echo "test: Node $machine (machine) leg took $((SECONDS - started)) s" >&2

# Only the full run (no file arguments) goes on to the other runtimes.
[ $# -eq 0 ] || exit 0
case "${ROLLGATE_NODE24_LEG:-full}" in
  full) [ "$machine" = 24 ] || leg 24 "${JEST[@]}" ;;
  smoke) [ "$machine" = 24 ] || leg 24 "${JEST[@]}" "${SMOKE24[@]}" ;;
  *) echo "test: ROLLGATE_NODE24_LEG is full or smoke" >&2 && exit 2 ;;
esac
[ "$machine" = 22 ] || node22
