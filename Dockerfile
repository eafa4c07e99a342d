# syntax=docker/dockerfile:1
# tusk image: `docker build -t tusk .`; run with `docker compose up` (see docker-compose.yml).

# --- build: compile TypeScript to dist/ ---
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build

# --- runtime: production dependencies + compiled code only ---
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
# tusk listens on 127.0.0.1 by default, unreachable from outside a container; who can reach it is
# decided by publishing the port (docker run -p / compose ports).
ENV HOST=0.0.0.0
# The processing workers drive Debian's ffmpeg/ffprobe (README: "Why no fluent-ffmpeg").
RUN apt-get update \
  && apt-get install -y --no-install-recommends ffmpeg \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
# DATA_DIR defaults to ./data; the unprivileged user must be able to write it.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 1080
# `node dist/tusk.js worker` runs the processing workers from the same image.
CMD ["node", "dist/tusk.js", "server"]
