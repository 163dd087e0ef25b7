#!/usr/bin/env bash
# Makes a private CA and the certificates a Ferry cluster needs for HTTPS on
# the gateway and mutual TLS between gateway, scheduler and workers:
#
#   ca.pem, ca-key.pem          the CA (keep ca-key.pem offline in production)
#   server.pem, server-key.pem  serverAuth+clientAuth: `ferry scheduler` and
#                               `ferry worker` (--mtls-*), and the gateway's
#                               HTTPS (--tls-cert/--tls-key)
#   client.pem, client-key.pem  clientAuth only: `ferry gateway` and
#                               `ferry drain` (--mtls-*)
#
# Usage: deploy/tls/make-certs.sh OUT_DIR [HOST_OR_IP ...]
# The server certificate names localhost and 127.0.0.1 plus each extra
# argument (an IP address or a DNS name), e.g. the addresses workers
# advertise. Keys are EC P-256; certificates last DAYS days (default 365).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [HOST_OR_IP ...]" >&2
  exit 2
fi
out=$1
shift
days=${DAYS:-365}
mkdir -p "$out"
cd "$out"
umask 077

san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The CA.
newkey ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=ferry-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# sign NAME CN EXTENDED_KEY_USAGE [SAN]
sign() {
  local name=$1 cn=$2 eku=$3 alt=${4:-}
  newkey "$name-key.pem"
  openssl req -new -key "$name-key.pem" -subj "/CN=$cn" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    if [ -n "$alt" ]; then echo "subjectAltName=$alt"; fi
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days "$days" \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign server ferry-server "serverAuth,clientAuth" "$san"
sign client ferry-client "clientAuth"
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "wrote $(pwd)/{ca,server,client}.pem and their -key.pem files (SAN $san)"
