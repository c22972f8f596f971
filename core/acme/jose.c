/* core/acme/jose.c — base64url, ACME keys, JWK and thumbprints, JWS (ES/RS/HS256), key
 * authorizations and CSRs, over GnuTLS and jansson. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "core/acme/jose.h"
#include "core/paf-internal.h"

static const char b64url_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *paf_b64url_encode(const void *data, size_t size) {
        const uint8_t *in = data;
        char *out, *p;

        if (size > (SIZE_MAX - 4) / 4 * 3)
                return NULL;
        out = malloc(size / 3 * 4 + 4 + 1);
        if (!out)
                return NULL;
        p = out;
        for (size_t i = 0; i < size; i += 3) {
                size_t n = size - i < 3 ? size - i : 3;
                uint32_t v = (uint32_t)in[i] << 16;
                if (n > 1)
                        v |= (uint32_t)in[i + 1] << 8;
                if (n > 2)
                        v |= in[i + 2];
                *p++ = b64url_alphabet[(v >> 18) & 63];
                *p++ = b64url_alphabet[(v >> 12) & 63];
                if (n > 1)
                        *p++ = b64url_alphabet[(v >> 6) & 63];
                if (n > 2)
                        *p++ = b64url_alphabet[v & 63];
        }
        *p = 0;
        return out;
}

static int b64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

int paf_b64url_decode(const char *s, size_t len, uint8_t **ret, size_t *ret_size,
                      paf_error *error) {
        uint8_t *out;
        size_t n = 0;
        uint32_t acc = 0;
        unsigned bits = 0;

        assert(s || len == 0);
        assert(ret);

        for (size_t i = 0; i < len; i++) {
                if (b64url_value(s[i]) < 0) {
                        unsigned char c = (unsigned char)s[i];
                        if (c == '=')
                                return paf_error_set(error, -EINVAL,
                                                     "base64url: padding '=' at offset %zu "
                                                     "(RFC 7515 forbids it)",
                                                     i);
                        if (c >= 0x20 && c < 0x7f)
                                return paf_error_set(error, -EINVAL,
                                                     "base64url: invalid character '%c' at "
                                                     "offset %zu",
                                                     c, i);
                        return paf_error_set(error, -EINVAL,
                                             "base64url: invalid byte 0x%02x at offset %zu", c, i);
                }
        }

        /* A lone trailing character carries 6 bits: not even one byte. */
        if (len % 4 == 1)
                return paf_error_set(error, -EINVAL,
                                     "base64url: %zu characters: not a valid length", len);

        out = malloc(len / 4 * 3 + 3 + 1);
        if (!out)
                return paf_error_set(error, -ENOMEM, "base64url: out of memory");
        for (size_t i = 0; i < len; i++) {
                acc = (acc << 6) | (uint32_t)b64url_value(s[i]);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (uint8_t)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* Nonzero leftover bits would give a second spelling of the same bytes. */
        if (acc != 0) {
                free(out);
                return paf_error_set(error, -EINVAL,
                                     "base64url: last character '%c' has nonzero unused bits",
                                     s[len - 1]);
        }
        out[n] = 0;
        *ret = out;
        if (ret_size)
                *ret_size = n;
        return 0;
}

/* Keys. */

struct paf_acme_key {
        gnutls_privkey_t priv;
        gnutls_pubkey_t pub;
        paf_acme_key_type type;
};

static const char *const key_type_names[_PAF_ACME_KEY_TYPE_MAX] = {
        [PAF_ACME_KEY_P256] = "p256",
        [PAF_ACME_KEY_P384] = "p384",
        [PAF_ACME_KEY_RSA2048] = "rsa2048",
        [PAF_ACME_KEY_RSA3072] = "rsa3072",
};

const char *paf_acme_key_type_to_string(paf_acme_key_type type) {
        if ((unsigned)type >= _PAF_ACME_KEY_TYPE_MAX)
                return NULL;
        return key_type_names[type];
}

int paf_acme_key_type_from_string(const char *s, paf_acme_key_type *ret, paf_error *error) {
        for (unsigned i = 0; s && i < _PAF_ACME_KEY_TYPE_MAX; i++)
                if (strcmp(s, key_type_names[i]) == 0) {
                        *ret = (paf_acme_key_type)i;
                        return 0;
                }
        return paf_error_set(error, -EINVAL,
                             "key type \"%s\": unknown (p256, p384, rsa2048 or rsa3072)",
                             s ? s : "");
}

paf_acme_key *paf_acme_key_free(paf_acme_key *key) {
        if (!key)
                return NULL;
        if (key->pub)
                gnutls_pubkey_deinit(key->pub);
        if (key->priv)
                gnutls_privkey_deinit(key->priv);
        free(key);
        return NULL;
}

const char *paf_acme_key_alg(const paf_acme_key *key) {
        assert(key);
        switch (key->type) {
        case PAF_ACME_KEY_P256:
                return "ES256";
        case PAF_ACME_KEY_P384:
                return "ES384";
        default:
                return "RS256";
        }
}

paf_acme_key_type paf_acme_key_get_type(const paf_acme_key *key) {
        assert(key);
        return key->type;
}

gnutls_privkey_t paf_acme_key_get_privkey(const paf_acme_key *key) {
        assert(key);
        return key->priv;
}

gnutls_pubkey_t paf_acme_key_get_pubkey(const paf_acme_key *key) {
        assert(key);
        return key->pub;
}

static gnutls_digest_algorithm_t key_digest(const paf_acme_key *key) {
        return key->type == PAF_ACME_KEY_P384 ? GNUTLS_DIG_SHA384 : GNUTLS_DIG_SHA256;
}

/* The coordinate (and r, s) size of an EC key, 0 for RSA. */
static size_t key_ec_size(const paf_acme_key *key) {
        switch (key->type) {
        case PAF_ACME_KEY_P256:
                return 32;
        case PAF_ACME_KEY_P384:
                return 48;
        default:
                return 0;
        }
}

/* Takes priv; derives the public key and the type, refusing what ACME
 * servers do not take. */
static int key_new(gnutls_privkey_t priv, const char *what, paf_acme_key **ret, paf_error *error) {
        paf_acme_key *key;
        unsigned bits = 0;
        int pk, r;

        key = calloc(1, sizeof(*key));
        if (!key) {
                gnutls_privkey_deinit(priv);
                return paf_error_set(error, -ENOMEM, "%s: out of memory", what);
        }
        key->priv = priv;

        r = gnutls_pubkey_init(&key->pub);
        if (r >= 0)
                r = gnutls_pubkey_import_privkey(key->pub, priv, 0, 0);
        if (r < 0) {
                paf_acme_key_free(key);
                return paf_error_set(error, -EINVAL, "%s: deriving the public key: %s", what,
                                     gnutls_strerror(r));
        }

        pk = gnutls_pubkey_get_pk_algorithm(key->pub, &bits);
        if (pk == GNUTLS_PK_ECDSA) {
                gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
                gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;

                r = gnutls_pubkey_export_ecc_raw2(key->pub, &curve, &x, &y, 0);
                gnutls_free(x.data);
                gnutls_free(y.data);
                if (r < 0) {
                        paf_acme_key_free(key);
                        return paf_error_set(error, -EINVAL, "%s: reading the EC curve: %s", what,
                                             gnutls_strerror(r));
                }
                if (curve == GNUTLS_ECC_CURVE_SECP256R1)
                        key->type = PAF_ACME_KEY_P256;
                else if (curve == GNUTLS_ECC_CURVE_SECP384R1)
                        key->type = PAF_ACME_KEY_P384;
                else {
                        const char *name = gnutls_ecc_curve_get_name(curve);
                        paf_acme_key_free(key);
                        return paf_error_set(error, -EOPNOTSUPP,
                                             "%s: EC curve %s not supported (P-256 or P-384)", what,
                                             name ? name : "unknown");
                }
        } else if (pk == GNUTLS_PK_RSA) {
                if (bits < 2048) {
                        paf_acme_key_free(key);
                        return paf_error_set(error, -EOPNOTSUPP,
                                             "%s: RSA key of %u bits: too small (2048 or more)",
                                             what, bits);
                }
                key->type = bits == 3072 ? PAF_ACME_KEY_RSA3072 : PAF_ACME_KEY_RSA2048;
        } else {
                const char *name =
                        pk < 0 ? NULL : gnutls_pk_algorithm_get_name((gnutls_pk_algorithm_t)pk);
                paf_acme_key_free(key);
                return paf_error_set(error, -EOPNOTSUPP,
                                     "%s: %s keys not supported (EC P-256, P-384 or RSA)", what,
                                     name ? name : "unknown");
        }
        *ret = key;
        return 0;
}

int paf_acme_key_generate(paf_acme_key_type type, paf_acme_key **ret, paf_error *error) {
        gnutls_privkey_t priv;
        gnutls_pk_algorithm_t pk;
        unsigned bits;
        int r;

        assert(ret);
        switch (type) {
        case PAF_ACME_KEY_P256:
                pk = GNUTLS_PK_ECDSA;
                bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1);
                break;
        case PAF_ACME_KEY_P384:
                pk = GNUTLS_PK_ECDSA;
                bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1);
                break;
        case PAF_ACME_KEY_RSA2048:
                pk = GNUTLS_PK_RSA;
                bits = 2048;
                break;
        case PAF_ACME_KEY_RSA3072:
                pk = GNUTLS_PK_RSA;
                bits = 3072;
                break;
        default:
                return paf_error_set(error, -EINVAL, "key type %d: unknown", (int)type);
        }

        r = gnutls_privkey_init(&priv);
        if (r < 0)
                return paf_error_set(error, -ENOMEM, "generating a %s key: %s",
                                     key_type_names[type], gnutls_strerror(r));
        r = gnutls_privkey_generate2(priv, pk, bits, 0, NULL, 0);
        if (r < 0) {
                gnutls_privkey_deinit(priv);
                return paf_error_set(error, -EIO, "generating a %s key: %s", key_type_names[type],
                                     gnutls_strerror(r));
        }
        return key_new(priv, "generated key", ret, error);
}

int paf_acme_key_load_pem(const void *pem, size_t size, paf_acme_key **ret, paf_error *error) {
        gnutls_privkey_t priv;
        gnutls_datum_t d;
        int r;

        assert(pem || size == 0);
        assert(ret);
        if (size > UINT_MAX)
                return paf_error_set(error, -EFBIG, "private key: %zu bytes: too large", size);
        d = (gnutls_datum_t){(unsigned char *)(uintptr_t)pem, (unsigned)size};

        r = gnutls_privkey_init(&priv);
        if (r < 0)
                return paf_error_set(error, -ENOMEM, "private key: %s", gnutls_strerror(r));
        r = gnutls_privkey_import_x509_raw(priv, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                gnutls_privkey_deinit(priv);
                return paf_error_set(error, -EINVAL, "private key: not a usable PEM key: %s",
                                     gnutls_strerror(r));
        }
        return key_new(priv, "private key", ret, error);
}

int paf_acme_key_save_pem(const paf_acme_key *key, char **ret_pem, size_t *ret_size,
                          paf_error *error) {
        gnutls_x509_privkey_t x = NULL;
        gnutls_datum_t d = {NULL, 0};
        char *pem;
        int r;

        assert(key);
        assert(ret_pem);
        r = gnutls_privkey_export_x509(key->priv, &x);
        if (r >= 0)
                r = gnutls_x509_privkey_export2_pkcs8(x, GNUTLS_X509_FMT_PEM, NULL,
                                                      GNUTLS_PKCS_PLAIN, &d);
        if (x)
                gnutls_x509_privkey_deinit(x);
        if (r < 0)
                return paf_error_set(error, -EIO, "private key: exporting PKCS#8: %s",
                                     gnutls_strerror(r));

        pem = malloc(d.size + 1);
        if (!pem) {
                gnutls_memset(d.data, 0, d.size);
                gnutls_free(d.data);
                return paf_error_set(error, -ENOMEM, "private key: out of memory");
        }
        memcpy(pem, d.data, d.size);
        pem[d.size] = 0;
        if (ret_size)
                *ret_size = d.size;
        gnutls_memset(d.data, 0, d.size);
        gnutls_free(d.data);
        *ret_pem = pem;
        return 0;
}

/* JWK. */

/* An unsigned big-endian integer as base64url: leading zero bytes dropped
 * (RFC 7518 §6.3.1.1), then left-padded with zeros to pad bytes when pad is
 * not 0 (the fixed-size EC coordinates of §6.2.1.2). */
static json_t *b64url_uint(const gnutls_datum_t *v, size_t pad) {
        const uint8_t *p = v->data;
        size_t n = v->size;
        uint8_t buf[66];
        char *s;
        json_t *j;

        while (n > 1 && p[0] == 0)
                p++, n--;
        if (pad) {
                if (n == 1 && p[0] == 0)
                        n = 0;
                if (n > pad || pad > sizeof(buf))
                        return NULL;
                memset(buf, 0, pad - n);
                memcpy(buf + pad - n, p, n);
                p = buf;
                n = pad;
        }
        s = paf_b64url_encode(p, n);
        if (!s)
                return NULL;
        j = json_string(s);
        free(s);
        return j;
}

int paf_acme_jwk_from_pubkey(gnutls_pubkey_t pub, json_t **ret, paf_error *error) {
        gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
        json_t *jwk = NULL, *ja = NULL, *jb = NULL;
        unsigned bits = 0;
        int pk, r;

        assert(pub);
        assert(ret);
        pk = gnutls_pubkey_get_pk_algorithm(pub, &bits);
        if (pk == GNUTLS_PK_ECDSA) {
                gnutls_ecc_curve_t curve;
                const char *crv;
                size_t size;

                r = gnutls_pubkey_export_ecc_raw2(pub, &curve, &a, &b, GNUTLS_EXPORT_FLAG_NO_LZ);
                if (r < 0)
                        return paf_error_set(error, -EINVAL, "JWK: exporting the EC key: %s",
                                             gnutls_strerror(r));
                if (curve == GNUTLS_ECC_CURVE_SECP256R1)
                        crv = "P-256", size = 32;
                else if (curve == GNUTLS_ECC_CURVE_SECP384R1)
                        crv = "P-384", size = 48;
                else {
                        const char *name = gnutls_ecc_curve_get_name(curve);
                        gnutls_free(a.data);
                        gnutls_free(b.data);
                        return paf_error_set(error, -EOPNOTSUPP,
                                             "JWK: EC curve %s not supported (P-256 or P-384)",
                                             name ? name : "unknown");
                }
                ja = b64url_uint(&a, size);
                jb = b64url_uint(&b, size);
                if (ja && jb)
                        jwk = json_pack("{s:s, s:s, s:o, s:o}", "crv", crv, "kty", "EC", "x", ja,
                                        "y", jb);
        } else if (pk == GNUTLS_PK_RSA) {
                /* a = modulus n, b = exponent e */
                r = gnutls_pubkey_export_rsa_raw2(pub, &a, &b, GNUTLS_EXPORT_FLAG_NO_LZ);
                if (r < 0)
                        return paf_error_set(error, -EINVAL, "JWK: exporting the RSA key: %s",
                                             gnutls_strerror(r));
                ja = b64url_uint(&a, 0);
                jb = b64url_uint(&b, 0);
                if (ja && jb)
                        jwk = json_pack("{s:o, s:s, s:o}", "e", jb, "kty", "RSA", "n", ja);
        } else
                return paf_error_set(
                        error, -EOPNOTSUPP, "JWK: %s keys not supported (EC P-256, P-384 or RSA)",
                        pk < 0 ? "unknown"
                               : gnutls_pk_algorithm_get_name((gnutls_pk_algorithm_t)pk));
        gnutls_free(a.data);
        gnutls_free(b.data);
        if (!jwk) {
                /* json_pack() steals "o" references even when it fails. */
                if (!(ja && jb)) {
                        json_decref(ja);
                        json_decref(jb);
                }
                return paf_error_set(error, -ENOMEM, "JWK: out of memory");
        }
        *ret = jwk;
        return 0;
}

int paf_acme_key_jwk(const paf_acme_key *key, json_t **ret, paf_error *error) {
        assert(key);
        return paf_acme_jwk_from_pubkey(key->pub, ret, error);
}

static int sha256_b64url(const void *data, size_t size, const char *what, char **ret,
                         paf_error *error) {
        uint8_t digest[32];
        char *s;
        int r;

        r = gnutls_hash_fast(GNUTLS_DIG_SHA256, data, size, digest);
        if (r < 0)
                return paf_error_set(error, -EIO, "%s: SHA-256: %s", what, gnutls_strerror(r));
        s = paf_b64url_encode(digest, sizeof(digest));
        if (!s)
                return paf_error_set(error, -ENOMEM, "%s: out of memory", what);
        *ret = s;
        return 0;
}

int paf_acme_jwk_thumbprint(const json_t *jwk, char **ret, paf_error *error) {
        static const char *const ec_members[] = {"crv", "kty", "x", "y", NULL};
        static const char *const rsa_members[] = {"e", "kty", "n", NULL};
        const char *const *members;
        const char *kty;
        json_t *canon;
        char *text;
        int r;

        assert(ret);
        kty = json_string_value(json_object_get(jwk, "kty"));
        if (!kty)
                return paf_error_set(error, -EINVAL, "JWK thumbprint: no \"kty\" string");
        if (strcmp(kty, "EC") == 0)
                members = ec_members;
        else if (strcmp(kty, "RSA") == 0)
                members = rsa_members;
        else
                return paf_error_set(error, -EOPNOTSUPP,
                                     "JWK thumbprint: kty \"%s\" not supported (EC or RSA)", kty);

        /* Only the required members count (RFC 7638 §3.2); the member lists
         * are sorted, and jansson keeps insertion order. */
        canon = json_object();
        if (!canon)
                return paf_error_set(error, -ENOMEM, "JWK thumbprint: out of memory");
        for (const char *const *m = members; *m; m++) {
                json_t *v = json_object_get(jwk, *m);
                if (!json_is_string(v)) {
                        json_decref(canon);
                        return paf_error_set(error, -EINVAL,
                                             "JWK thumbprint: %s key without a \"%s\" string", kty,
                                             *m);
                }
                if (json_object_set(canon, *m, v) < 0) {
                        json_decref(canon);
                        return paf_error_set(error, -ENOMEM, "JWK thumbprint: out of memory");
                }
        }
        text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(canon);
        if (!text)
                return paf_error_set(error, -ENOMEM, "JWK thumbprint: out of memory");
        r = sha256_b64url(text, strlen(text), "JWK thumbprint", ret, error);
        free(text);
        return r;
}

int paf_acme_key_thumbprint(const paf_acme_key *key, char **ret, paf_error *error) {
        json_t *jwk;
        int r;

        r = paf_acme_key_jwk(key, &jwk, error);
        if (r < 0)
                return r;
        r = paf_acme_jwk_thumbprint(jwk, ret, error);
        json_decref(jwk);
        return r;
}

/* JWS. */

/* base64url(header) '.' base64url(payload), the JWS signing input; also
 * returns the two halves, which the flattened serialization carries. */
static int signing_input(const json_t *header, const json_t *payload, char **ret_input,
                         char **ret_protected, char **ret_payload, paf_error *error) {
        _cleanup_free_ char *h = NULL, *p = NULL;
        char *h64 = NULL, *p64 = NULL, *input;

        h = json_dumps(header, JSON_COMPACT);
        /* POST-as-GET (RFC 8555 §6.3): the payload is the empty string. */
        p = payload ? json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("");
        if (h && p) {
                h64 = paf_b64url_encode(h, strlen(h));
                p64 = paf_b64url_encode(p, strlen(p));
        }
        if (!h64 || !p64 || asprintf(&input, "%s.%s", h64, p64) < 0) {
                free(h64);
                free(p64);
                return paf_error_set(error, -ENOMEM, "JWS: out of memory");
        }
        *ret_input = input;
        *ret_protected = h64;
        *ret_payload = p64;
        return 0;
}

static int flattened(char *protected64, char *payload64, const uint8_t *sig, size_t sig_size,
                     json_t **ret, paf_error *error) {
        char *sig64 = paf_b64url_encode(sig, sig_size);
        json_t *jws = NULL;

        if (sig64)
                jws = json_pack("{s:s, s:s, s:s}", "protected", protected64, "payload", payload64,
                                "signature", sig64);
        free(sig64);
        if (!jws)
                return paf_error_set(error, -ENOMEM, "JWS: out of memory");
        *ret = jws;
        return 0;
}

/* JWS ES256/ES384 signatures are r || s, each of the curve's size (RFC 7518
 * §3.4), where GnuTLS gives the DER SEQUENCE of two INTEGERs. */
static int ecdsa_der_to_raw(const gnutls_datum_t *der, size_t size, uint8_t *out,
                            paf_error *error) {
        gnutls_datum_t rs[2] = {{NULL, 0}, {NULL, 0}};
        int r;

        r = gnutls_decode_rs_value(der, &rs[0], &rs[1]);
        if (r < 0)
                return paf_error_set(error, -EIO, "JWS: decoding the ECDSA signature: %s",
                                     gnutls_strerror(r));
        for (unsigned i = 0; i < 2; i++) {
                const uint8_t *p = rs[i].data;
                size_t n = rs[i].size;
                while (n > 0 && p[0] == 0)
                        p++, n--;
                if (n > size) {
                        r = -EIO;
                        break;
                }
                memset(out + i * size, 0, size - n);
                memcpy(out + i * size + size - n, p, n);
        }
        gnutls_free(rs[0].data);
        gnutls_free(rs[1].data);
        if (r < 0)
                return paf_error_set(error, r, "JWS: ECDSA signature value larger than the curve");
        return 0;
}

int paf_acme_jws_sign(const paf_acme_key *key, const char *kid, const char *nonce, const char *url,
                      const json_t *payload, json_t **ret, paf_error *error) {
        _cleanup_free_ char *input = NULL, *protected64 = NULL, *payload64 = NULL;
        gnutls_datum_t data, sig = {NULL, 0};
        json_t *header, *jwk = NULL;
        uint8_t raw[2 * 48];
        size_t ec_size;
        int r;

        assert(key);
        assert(ret);
        if (!url || !*url)
                return paf_error_set(error, -EINVAL, "JWS: no URL to sign for");

        header = json_pack("{s:s}", "alg", paf_acme_key_alg(key));
        if (!header)
                return paf_error_set(error, -ENOMEM, "JWS: out of memory");
        if (!kid) {
                r = paf_acme_key_jwk(key, &jwk, error);
                if (r < 0) {
                        json_decref(header);
                        return r;
                }
        }
        if ((kid ? json_object_set_new(header, "kid", json_string(kid))
                 : json_object_set_new(header, "jwk", jwk)) < 0 ||
            (nonce && json_object_set_new(header, "nonce", json_string(nonce)) < 0) ||
            json_object_set_new(header, "url", json_string(url)) < 0) {
                json_decref(header);
                return paf_error_set(error, -ENOMEM, "JWS: out of memory or invalid UTF-8");
        }

        r = signing_input(header, payload, &input, &protected64, &payload64, error);
        json_decref(header);
        if (r < 0)
                return r;

        data = (gnutls_datum_t){(unsigned char *)input, (unsigned)strlen(input)};
        r = gnutls_privkey_sign_data(key->priv, key_digest(key), 0, &data, &sig);
        if (r < 0)
                return paf_error_set(error, -EIO, "JWS: signing with the %s key: %s",
                                     paf_acme_key_alg(key), gnutls_strerror(r));

        ec_size = key_ec_size(key);
        if (ec_size) {
                r = ecdsa_der_to_raw(&sig, ec_size, raw, error);
                gnutls_free(sig.data);
                if (r < 0)
                        return r;
                return flattened(protected64, payload64, raw, 2 * ec_size, ret, error);
        }
        r = flattened(protected64, payload64, sig.data, sig.size, ret, error);
        gnutls_free(sig.data);
        return r;
}

int paf_acme_eab_sign(const paf_acme_key *account_key, const char *eab_kid,
                      const char *eab_hmac_key, const char *url, json_t **ret, paf_error *error) {
        _cleanup_free_ char *input = NULL, *protected64 = NULL, *payload64 = NULL;
        uint8_t *mac_key = NULL, mac[32];
        size_t mac_key_size = 0;
        json_t *header, *jwk;
        int r;

        assert(account_key);
        assert(ret);
        if (!eab_kid || !*eab_kid)
                return paf_error_set(error, -EINVAL, "external account binding: no key id");
        if (!url || !*url)
                return paf_error_set(error, -EINVAL, "external account binding: no URL");
        r = paf_b64url_decode(eab_hmac_key ? eab_hmac_key : "",
                              eab_hmac_key ? strlen(eab_hmac_key) : 0, &mac_key, &mac_key_size,
                              error);
        if (r < 0)
                return paf_error_prefix(error, "external account binding: HMAC key"), r;
        if (mac_key_size == 0) {
                free(mac_key);
                return paf_error_set(error, -EINVAL, "external account binding: empty HMAC key");
        }

        r = paf_acme_key_jwk(account_key, &jwk, error);
        if (r < 0)
                goto finish;
        header = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
        if (!header) {
                json_decref(jwk);
                r = paf_error_set(error, -ENOMEM,
                                  "external account binding: out of memory or invalid UTF-8");
                goto finish;
        }
        r = signing_input(header, jwk, &input, &protected64, &payload64, error);
        json_decref(header);
        json_decref(jwk);
        if (r < 0)
                goto finish;

        r = gnutls_hmac_fast(GNUTLS_MAC_SHA256, mac_key, mac_key_size, input, strlen(input), mac);
        if (r < 0) {
                r = paf_error_set(error, -EIO, "external account binding: HMAC-SHA256: %s",
                                  gnutls_strerror(r));
                goto finish;
        }
        r = flattened(protected64, payload64, mac, sizeof(mac), ret, error);
finish:
        gnutls_memset(mac_key, 0, mac_key_size);
        free(mac_key);
        return r;
}

/* Challenges. */

bool paf_acme_token_is_valid(const char *token) {
        if (!token || !*token)
                return false;
        for (const char *p = token; *p; p++)
                if (b64url_value(*p) < 0)
                        return false;
        return true;
}

int paf_acme_key_authorization(const paf_acme_key *account_key, const char *token, char **ret,
                               paf_error *error) {
        _cleanup_free_ char *thumbprint = NULL;
        char *s;
        int r;

        assert(account_key);
        assert(ret);
        if (!paf_acme_token_is_valid(token))
                return paf_error_set(error, -EINVAL,
                                     "challenge token \"%.64s\": not base64url (RFC 8555 §8.1)",
                                     token ? token : "");
        r = paf_acme_key_thumbprint(account_key, &thumbprint, error);
        if (r < 0)
                return r;
        if (asprintf(&s, "%s.%s", token, thumbprint) < 0)
                return paf_error_set(error, -ENOMEM, "key authorization: out of memory");
        *ret = s;
        return 0;
}

int paf_acme_tls_alpn01_digest(const char *key_authorization,
                               uint8_t ret[PAF_ACME_TLS_ALPN01_DIGEST_SIZE], paf_error *error) {
        int r;

        assert(ret);
        if (!key_authorization || !*key_authorization)
                return paf_error_set(error, -EINVAL, "tls-alpn-01: empty key authorization");
        r = gnutls_hash_fast(GNUTLS_DIG_SHA256, key_authorization, strlen(key_authorization), ret);
        if (r < 0)
                return paf_error_set(error, -EIO, "tls-alpn-01: SHA-256: %s", gnutls_strerror(r));
        return 0;
}

/* CSR. */

/* What a DNS identifier may hold: LDH labels, and a "*." first label for
 * wildcards. The CA decides the rest (public suffixes, policy). */
static bool dns_name_is_valid(const char *name) {
        size_t len = strlen(name), label = 0;

        if (len == 0 || len > 253)
                return false;
        if (strncmp(name, "*.", 2) == 0)
                name += 2;
        if (!*name)
                return false;
        for (const char *p = name;; p++) {
                if (*p == '.' || *p == 0) {
                        if (label == 0 || label > 63 || p[-1] == '-')
                                return false;
                        if (*p == 0)
                                return true;
                        label = 0;
                        continue;
                }
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || (*p == '-' && label > 0)))
                        return false;
                label++;
        }
}

int paf_acme_csr(const paf_acme_key *cert_key, const char *const *identifiers, size_t n_identifiers,
                 uint8_t **ret_der, size_t *ret_der_size, char **ret_b64url, paf_error *error) {
        gnutls_x509_crq_t crq = NULL;
        gnutls_datum_t der = {NULL, 0};
        uint8_t *copy = NULL;
        char *b64 = NULL;
        int r;

        assert(cert_key);
        assert(identifiers || n_identifiers == 0);
        if (n_identifiers == 0)
                return paf_error_set(error, -EINVAL, "CSR: no identifier");

        r = gnutls_x509_crq_init(&crq);
        if (r < 0)
                return paf_error_set(error, -ENOMEM, "CSR: %s", gnutls_strerror(r));
        r = gnutls_x509_crq_set_version(crq, 1);
        if (r < 0)
                goto gnutls_fail;
        r = gnutls_x509_crq_set_pubkey(crq, cert_key->pub);
        if (r < 0)
                goto gnutls_fail;

        for (size_t i = 0; i < n_identifiers; i++) {
                const char *id = identifiers[i];
                uint8_t addr[16];

                if (!id) {
                        r = paf_error_set(error, -EINVAL, "CSR: identifier %zu is NULL", i);
                        goto finish;
                }
                /* IP identifiers go in as iPAddress SANs (RFC 8738 §3). */
                if (inet_pton(AF_INET, id, addr) == 1)
                        r = gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_IPADDRESS, addr, 4,
                                                                 GNUTLS_FSAN_APPEND);
                else if (inet_pton(AF_INET6, id, addr) == 1)
                        r = gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_IPADDRESS, addr,
                                                                 16, GNUTLS_FSAN_APPEND);
                else if (dns_name_is_valid(id))
                        r = gnutls_x509_crq_set_subject_alt_name(crq, GNUTLS_SAN_DNSNAME, id,
                                                                 (unsigned)strlen(id),
                                                                 GNUTLS_FSAN_APPEND);
                else {
                        r = paf_error_set(error, -EINVAL,
                                          "CSR: identifier \"%.256s\": neither a DNS name nor "
                                          "an IP address",
                                          id);
                        goto finish;
                }
                if (r < 0) {
                        r = paf_error_set(error, -EINVAL, "CSR: identifier \"%.256s\": %s", id,
                                          gnutls_strerror(r));
                        goto finish;
                }
        }

        r = gnutls_x509_crq_privkey_sign(crq, cert_key->priv, key_digest(cert_key), 0);
        if (r < 0)
                goto gnutls_fail;
        r = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_DER, &der);
        if (r < 0)
                goto gnutls_fail;

        if (ret_b64url) {
                b64 = paf_b64url_encode(der.data, der.size);
                if (!b64)
                        goto oom;
        }
        if (ret_der) {
                copy = malloc(der.size ? der.size : 1);
                if (!copy)
                        goto oom;
                memcpy(copy, der.data, der.size);
                *ret_der = copy;
                if (ret_der_size)
                        *ret_der_size = der.size;
        }
        if (ret_b64url)
                *ret_b64url = b64;
        r = 0;
        goto finish;

oom:
        free(b64);
        r = paf_error_set(error, -ENOMEM, "CSR: out of memory");
        goto finish;
gnutls_fail:
        r = paf_error_set(error, -EIO, "CSR: %s", gnutls_strerror(r));
finish:
        gnutls_free(der.data);
        gnutls_x509_crq_deinit(crq);
        return r;
}
