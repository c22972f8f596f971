# tests/http/https-certs.sh — sourced by the https tests and bench/https.sh: a test CA and ECDSA P-256 certificates made with certtool.
#
#   https_ca DIR NAME              DIR/NAME.pem and DIR/NAME.key: a CA
#   https_cert DIR NAME CA CN [SAN…] [--expired] [--client]
#                                  DIR/NAME.pem, DIR/NAME.key signed by CA;
#                                  a SAN with only digits and dots is an IP
#   https_subject FILE             the certificate's subject DN, one line

https_key() {
        certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text \
                --outfile "$1" 2>/dev/null
}

https_ca() {
        https_key "$1/$2.key" || return 1
        cat >"$1/$2.tmpl" <<EOF
cn = "paf test $2"
organization = "paf tests"
ca
cert_signing_key
crl_signing_key
expiration_days = 30
EOF
        certtool --generate-self-signed --load-privkey "$1/$2.key" --template "$1/$2.tmpl" \
                --no-text --outfile "$1/$2.pem" 2>/dev/null
}

https_cert() {
        dir=$1 name=$2 ca=$3 cn=$4
        shift 4
        https_key "$dir/$name.key" || return 1
        {
                echo "cn = \"$cn\""
                echo 'organization = "paf tests"'
                echo "serial = $(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
        } >"$dir/$name.tmpl"
        usage=tls_www_server
        expired=
        for san in "$@"; do
                case $san in
                --expired) expired=1 ;;
                --client) usage=tls_www_client ;;
                *[!0-9.]*) echo "dns_name = \"$san\"" >>"$dir/$name.tmpl" ;;
                *) echo "ip_address = \"$san\"" >>"$dir/$name.tmpl" ;;
                esac
        done
        {
                echo "$usage"
                echo signing_key
                if [ -n "$expired" ]; then
                        echo 'activation_date = "2020-01-01 00:00:00 UTC"'
                        echo 'expiration_date = "2020-02-01 00:00:00 UTC"'
                else
                        echo 'expiration_days = 30'
                fi
        } >>"$dir/$name.tmpl"
        certtool --generate-certificate --load-privkey "$dir/$name.key" \
                --load-ca-certificate "$dir/$ca.pem" --load-ca-privkey "$dir/$ca.key" \
                --template "$dir/$name.tmpl" --no-text --outfile "$dir/$name.pem" 2>/dev/null
}

https_subject() {
        certtool -i --infile "$1" 2>/dev/null | sed -n 's/^[[:space:]]*Subject: //p' | head -n 1
}
