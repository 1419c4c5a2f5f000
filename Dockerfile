# syntax=docker/dockerfile:1
#
# One image for the four services; the command picks the service:
#   node dist/apps/api/src/main.js             (API_PORT, 3000)
#   node dist/apps/dispatcher/src/main.js      (DISPATCHER_PORT, 3001)
#   node dist/apps/webhook-ingest/src/main.js  (WEBHOOK_INGEST_PORT, 3002)
#   node dist/apps/monitor/src/main.js         (MONITOR_PORT, 3003)
#   node dist/scripts/migrate.js               (one-shot database migrations)
#
# Build: docker build -t edm-dispatch .
# Health checks are defined by docker-compose.yml and the Kubernetes manifests (deploy/k8s).

ARG NODE_IMAGE=node:20-slim

# ---- deps: every dependency (dev included), cached while the lock file is unchanged ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# ---- build: tsc + tsc-alias into dist/ ----
FROM deps AS build
WORKDIR /app
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY apps ./apps
COPY libs ./libs
COPY scripts ./scripts
RUN npm run build

# ---- runtime: production dependencies and the compiled output only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    EDM_HOME=/var/lib/edm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force \
    && mkdir -p /var/lib/edm \
    && chown node:node /var/lib/edm
COPY --from=build /app/dist ./dist
# The image's own non-root user (node, uid 1000). Kubernetes runs it with runAsUser 1000 and a
# read-only root file system; EDM_HOME is the only place the services write to.
USER node
EXPOSE 3000 3001 3002 3003
CMD ["node", "dist/apps/api/src/main.js"]
