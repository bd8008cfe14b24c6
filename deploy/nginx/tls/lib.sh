# Shared by 30-tls.sh (at start) and watch-certificate.sh (on renewal): sourced, not run.

# Prints what is wrong with a certificate and key pair on one line, and fails; silent if good.
pair_problem() {
    cert=$1 key=$2
    [ -r "$cert" ] || { echo "TLS_CERT_FILE=$cert does not exist or is not readable by uid $(id -u)"; return 1; }
    [ -r "$key" ] || { echo "TLS_KEY_FILE=$key does not exist or is not readable by uid $(id -u)"; return 1; }
    cert_key=$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null) ||
        { echo "TLS_CERT_FILE=$cert is not a PEM certificate"; return 1; }
    key_key=$(openssl pkey -in "$key" -pubout 2>/dev/null) ||
        { echo "TLS_KEY_FILE=$key is not a PEM private key (or it is encrypted)"; return 1; }
    # nginx itself does not notice: `nginx -t` passes an RSA certificate with an EC key (it
    # takes them for two certificate slots) and every handshake fails later.
    [ "$cert_key" = "$key_key" ] ||
        { echo "TLS_KEY_FILE=$key is not the key of the certificate in TLS_CERT_FILE=$cert"; return 1; }
    openssl x509 -in "$cert" -noout -checkend 0 >/dev/null ||
        { echo "TLS_CERT_FILE=$cert expired on $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)"; return 1; }
}

# Writes the server block's TLS part for this pair (the include in default.conf reads it).
render_server_conf() {
    mkdir -p /etc/nginx/conf.d/tls
    TLS_CERT_FILE=$1 TLS_KEY_FILE=$2 TLS_REDIRECT_PORT=$3 \
        envsubst '${TLS_CERT_FILE} ${TLS_KEY_FILE} ${TLS_REDIRECT_PORT}' \
        </etc/nginx/tls/server.conf.template >/etc/nginx/conf.d/tls/server.conf.new
    mv /etc/nginx/conf.d/tls/server.conf.new /etc/nginx/conf.d/tls/server.conf
}
