#!/bin/sh
# nginx's real client address from NGINX_TRUSTED_PROXIES (addresses or CIDRs, comma- or
# space-separated; empty by default). Requests from those peers are taken to come from the
# address they append to X-Forwarded-For; every other peer is the client itself. The login rate
# limit ($binary_remote_addr) and /readyz's allow list then see the real client.
# The official nginx image runs it from /docker-entrypoint.d/ after rendering the templates;
# deploy/nginx_config.py runs the same file for the no-Docker stack.
set -eu

output="${NGINX_TRUSTED_PROXIES_CONF:-/etc/nginx/conf.d/pru-trusted-proxies.conf}"
trap 'rm -f "$output.tmp"' EXIT
proxies=$(printf '%s' "${NGINX_TRUSTED_PROXIES:-}" | tr ',' ' ')

{
  echo "# Generated from NGINX_TRUSTED_PROXIES by deploy/nginx/trusted-proxies.sh."
  for proxy in $proxies; do
    case "$proxy" in
      *[!0-9A-Fa-f.:/]*)
        echo "trusted-proxies: NGINX_TRUSTED_PROXIES entry '$proxy' is not an IP address or CIDR" >&2
        exit 1 ;;
    esac
    echo "set_real_ip_from $proxy;"
  done
  if [ -n "$(printf '%s' "$proxies" | tr -d ' ')" ]; then
    echo "real_ip_header X-Forwarded-For;"
    # The right-most address that is not a trusted proxy: a client cannot choose it.
    echo "real_ip_recursive on;"
    # With NGINX_TRUST_FORWARDED_PROTO=on, only these peers may say the request was HTTPS.
    echo 'geo $realip_remote_addr $pru_peer_is_trusted_proxy {'
    echo "    default 0;"
    for proxy in $proxies; do
      echo "    $proxy 1;"
    done
    echo "}"
  else
    echo "# None: every client is the peer nginx sees, and NGINX_TRUST_FORWARDED_PROTO alone decides."
    echo 'geo $realip_remote_addr $pru_peer_is_trusted_proxy {'
    echo "    default 1;"
    echo "}"
  fi
} > "$output.tmp"
mv "$output.tmp" "$output"
