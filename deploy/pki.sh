#!/usr/bin/env bash
# Development PKI for a Strata hierarchy: a root CA and one certificate per
# entity. Not for production (keys are unencrypted).
#
#   deploy/pki.sh DIR ROLE/NAME [ROLE/NAME ...]
#   deploy/pki.sh /tmp/pki site/CAS site/P01 site/P02 site/S01
#
# Writes DIR/ca.pem, DIR/ca.key (created once, reused after) and for each
# entity DIR/ROLE-NAME.pem and DIR/ROLE-NAME.key. The certificate's subject is
# O=Strata, OU=ROLE, CN=NAME: that is the identity Strata servers check. Each
# certificate serves both as client and server certificate (SAN localhost,
# 127.0.0.1, ::1). Existing entity certificates are kept.
# ROLE "issuing" makes a site's issuing CA instead (issuing/P01): an
# intermediate CA that signs the certificates of the site's clients.
# Also writes DIR/assets.key (once): the hierarchy's key for runbook assets
# (32 random bytes, hex), given to every site server and provider.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
dir=$1; shift
mkdir -p "$dir"
umask 077

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/O=Strata/OU=ca/CN=Strata Development Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
[ -f "$dir/assets.key" ] || openssl rand -hex 32 > "$dir/assets.key"

for entity in "$@"; do
  role=${entity%%/*}; name=${entity#*/}
  if [ -z "$role" ] || [ -z "$name" ] || [ "$role" = "$entity" ]; then
    echo "pki.sh: entity '$entity' must be ROLE/NAME, e.g. site/P01" >&2; exit 2
  fi
  base="$dir/$role-$name"
  [ -f "$base.pem" ] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/O=Strata/OU=$role/CN=$name" -keyout "$base.key" -out "$base.csr" 2>/dev/null
  ext=$(mktemp)
  if [ "$role" = issuing ]; then
    printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
      "keyUsage=critical,keyCertSign,cRLSign" > "$ext"
  else
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" > "$ext"
  fi
  openssl x509 -req -in "$base.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -extfile "$ext" -out "$base.pem" 2>/dev/null
  rm -f "$base.csr" "$ext"
done
chmod 644 "$dir"/*.pem
