#!/usr/bin/env bash
# Deploys one device worker: its private shard bucket, its secrets, the worker itself.
# usage: infra/deploy/deploy-device.sh ENV            (ENV is an [env.*] of wrangler.toml, e.g. device-eu-1)
# Needs: `npx wrangler login` (or CLOUDFLARE_API_TOKEN) and SPLITFROZEN_ROUND_SECRET, the training server's master
# secret: the device gets its own secret derived from it and its DEVICE_ID, never the master itself.
set -euo pipefail
env="${1:?usage: $0 ENV (an [env.*] section of wrangler.toml)}"
cd "$(dirname "$0")/../.."
bucket=$(node -e "const t=require('fs').readFileSync('wrangler.toml','utf8');const s=t.split('[env.$env]')[1]||'';const m=s.match(/bucket_name = \"([^\"]+)\"/);if(!m){console.error('no [env.$env] with an r2 bucket in wrangler.toml');process.exit(2)}console.log(m[1])")

npm run --silent deploy:check -- --env "$env" >/dev/null     # refuses a bundle over the size limit
npx wrangler r2 bucket create "$bucket" || echo "bucket $bucket exists"
if [ -z "${OWNER_TOKEN:-}" ]; then OWNER_TOKEN=$(node -e "console.log(require('crypto').randomBytes(24).toString('hex'))"); echo "owner token for $env: $OWNER_TOKEN (give it to the device's owner)"; fi
printf '%s' "$OWNER_TOKEN" | npx wrangler secret put OWNER_TOKEN --env "$env"
device=$(node -e "const t=require('fs').readFileSync('wrangler.toml','utf8');const s=t.split('[env.$env]')[1]||'';const m=s.match(/DEVICE_ID = \"([^\"]+)\"/);if(!m){console.error('no DEVICE_ID in [env.$env] of wrangler.toml');process.exit(2)}console.log(m[1])")
: "${SPLITFROZEN_ROUND_SECRET:?set SPLITFROZEN_ROUND_SECRET to the master round secret of the training server}"
npm run --silent cli -- device-secret --device "$device" | npx wrangler secret put ROUND_SECRET --env "$env"
# The key of the device's defence noise: the device's own, never derived from the server's secret (docs/SECURITY.md).
# Made once; deploying again keeps it (a new key would let a server average old and new uploads of the same rows).
if ! npx wrangler secret list --env "$env" 2>/dev/null | grep -q '"DEFENCE_SECRET"'; then
  node -e "process.stdout.write(require('crypto').randomBytes(32).toString('hex'))" | npx wrangler secret put DEFENCE_SECRET --env "$env"
fi
npx wrangler deploy --env "$env"
