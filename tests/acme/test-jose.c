/* tests/acme/test-jose.c — core/acme/jose.c: base64url, keys, JWK thumbprints, JWS (ES256,
 * ES384, RS256, HS256), key authorizations and CSRs, checked with GnuTLS on its own. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "core/acme/jose.h"
#include "tests/acme/jose-keys.h"

static uint8_t *b64d(const char *s, size_t *ret_size) {
        uint8_t *out = NULL;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_b64url_decode(s, strlen(s), &out, ret_size, &err);
        if (r < 0)
                fail_msg("decoding \"%s\": %s", s, err.message);
        return out;
}

static paf_acme_key *load(const char *pem) {
        paf_acme_key *key = NULL;
        paf_error err = PAF_ERROR_NULL;
        if (paf_acme_key_load_pem(pem, strlen(pem), &key, &err) < 0)
                fail_msg("%s", err.message);
        return key;
}

/* RFC 4648 §10, in the URL-safe alphabet and without padding. */
static void test_b64url_vectors(void **state) {
        static const struct {
                const char *in, *out;
        } v[] = {
                {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
                {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                char *e = paf_b64url_encode(v[i].in, strlen(v[i].in));
                assert_non_null(e);
                assert_string_equal(e, v[i].out);
                free(e);
                size_t n = 99;
                uint8_t *d = b64d(v[i].out, &n);
                assert_int_equal(n, strlen(v[i].in));
                assert_memory_equal(d, v[i].in, n);
                assert_int_equal(d[n], 0);
                free(d);
        }

        /* The two characters where base64url differs from base64: "+/8=" there. */
        static const uint8_t fb_ff[] = {0xfb, 0xff};
        char *e = paf_b64url_encode(fb_ff, 2);
        assert_string_equal(e, "-_8");
        free(e);

        /* Every byte value, at every position modulo 3. */
        uint8_t all[258];
        for (size_t i = 0; i < sizeof(all); i++)
                all[i] = (uint8_t)(i * 7 + 3);
        for (size_t len = 255; len <= 258; len++) {
                e = paf_b64url_encode(all, len);
                assert_int_equal(strlen(e), (len * 4 + 2) / 3);
                assert_null(strpbrk(e, "+/="));
                size_t n;
                uint8_t *d = b64d(e, &n);
                assert_int_equal(n, len);
                assert_memory_equal(d, all, len);
                free(d);
                free(e);
        }
}

static void test_b64url_strict(void **state) {
        static const struct {
                const char *in, *why;
        } bad[] = {
                {"Zg==", "padding '=' at offset 2"},
                {"Zm9v\n", "invalid byte 0x0a at offset 4"},
                {"Zm 9v", "invalid character ' ' at offset 2"},
                {"Zm+v", "invalid character '+' at offset 2"},
                {"Zm/v", "invalid character '/' at offset 2"},
                {"Z", "1 characters: not a valid length"},
                {"Zm9vY", "5 characters: not a valid length"},
                /* "Zh" and "Zm9" decode to the same bytes as "Zg" and "Zm8" would
                 * but with unused bits set. */
                {"Zh", "last character 'h' has nonzero unused bits"},
                {"Zm9", "last character '9' has nonzero unused bits"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                paf_error err = PAF_ERROR_NULL;
                uint8_t *out = (uint8_t *)"untouched";
                size_t n = 42;
                assert_int_equal(paf_b64url_decode(bad[i].in, strlen(bad[i].in), &out, &n, &err),
                                 -EINVAL);
                assert_string_equal((char *)out, "untouched");
                assert_int_equal(n, 42);
                assert_int_equal(err.code, -EINVAL);
                if (!strstr(err.message, bad[i].why))
                        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", bad[i].in, err.message,
                                 bad[i].why);
        }
}

static const char rfc7638_n[] =
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
        "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_"
        "RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpb"
        "ISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-"
        "csFCur-kEgU8awapJzKnqDKgw";
static const char rfc7638_thumbprint[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

/* RFC 7638 §3.1: the key of that JWK, imported into GnuTLS, gives the same
 * JWK and the RFC's thumbprint. */
static void test_rfc7638_thumbprint(void **state) {
        (void)state;
        gnutls_pubkey_t pub;
        gnutls_datum_t n, e;
        size_t n_size, e_size;
        n.data = b64d(rfc7638_n, &n_size);
        e.data = b64d("AQAB", &e_size);
        n.size = (unsigned)n_size;
        e.size = (unsigned)e_size;
        assert_int_equal(gnutls_pubkey_init(&pub), 0);
        assert_int_equal(gnutls_pubkey_import_rsa_raw(pub, &n, &e), 0);
        free(n.data);
        free(e.data);

        json_t *jwk;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_jwk_from_pubkey(pub, &jwk, &err), 0);
        gnutls_pubkey_deinit(pub);
        /* GnuTLS exports n with a leading zero byte (its top bit is set):
         * the JWK has none. */
        assert_int_equal(json_object_size(jwk), 3);
        assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "RSA");
        assert_string_equal(json_string_value(json_object_get(jwk, "n")), rfc7638_n);
        assert_string_equal(json_string_value(json_object_get(jwk, "e")), "AQAB");

        char *t;
        assert_int_equal(paf_acme_jwk_thumbprint(jwk, &t, &err), 0);
        assert_string_equal(t, rfc7638_thumbprint);
        free(t);
        json_decref(jwk);

        /* The RFC's JWK itself, members in its order, with the optional ones
         * the thumbprint leaves out. */
        json_t *rfc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", rfc7638_n, "e",
                                "AQAB", "alg", "RS256", "kid", "2011-04-29");
        assert_int_equal(paf_acme_jwk_thumbprint(rfc, &t, &err), 0);
        assert_string_equal(t, rfc7638_thumbprint);
        free(t);
        json_object_del(rfc, "e");
        t = (char *)"untouched";
        assert_int_equal(paf_acme_jwk_thumbprint(rfc, &t, &err), -EINVAL);
        assert_string_equal(t, "untouched");
        assert_non_null(strstr(err.message, "\"e\""));
        json_decref(rfc);
}

/* The JWK's coordinate, base64url-decoded, against GnuTLS's own minimal export. */
static void check_coordinate(const paf_acme_key *key, const char *name, size_t want_minimal) {
        gnutls_datum_t x, y;
        gnutls_ecc_curve_t curve;
        assert_int_equal(gnutls_pubkey_export_ecc_raw2(paf_acme_key_get_pubkey(key), &curve, &x, &y,
                                                       GNUTLS_EXPORT_FLAG_NO_LZ),
                         0);
        const gnutls_datum_t *v = name[0] == 'x' ? &x : &y;
        /* The fixture's point: this coordinate is one byte short without padding. */
        assert_int_equal(v->size, want_minimal);

        json_t *jwk;
        assert_int_equal(paf_acme_key_jwk(key, &jwk, NULL), 0);
        assert_int_equal(json_object_size(jwk), 4);
        assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
        assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
        size_t n;
        uint8_t *d = b64d(json_string_value(json_object_get(jwk, name)), &n);
        assert_int_equal(n, 32);
        assert_memory_equal(d + 32 - v->size, v->data, v->size);
        for (size_t i = 0; i < 32 - v->size; i++)
                assert_int_equal(d[i], 0);
        free(d);
        json_decref(jwk);
        gnutls_free(x.data);
        gnutls_free(y.data);
}

static void test_ec_jwk_padding(void **state) {
        (void)state;
        paf_acme_key *kx = load(key_p256_x0), *ky = load(key_p256_y0);
        check_coordinate(kx, "x", 31);
        check_coordinate(ky, "y", 31);
        paf_acme_key_free(kx);
        paf_acme_key_free(ky);
}

static void test_key_generate_save_load(void **state) {
        static const struct {
                paf_acme_key_type type;
                const char *alg, *crv;
        } types[] = {
                {PAF_ACME_KEY_P256, "ES256", "P-256"},
                {PAF_ACME_KEY_P384, "ES384", "P-384"},
                {PAF_ACME_KEY_RSA2048, "RS256", NULL},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                paf_acme_key *key = NULL, *again = NULL;
                paf_error err = PAF_ERROR_NULL;
                assert_int_equal(paf_acme_key_generate(types[i].type, &key, &err), 0);
                assert_int_equal(paf_acme_key_get_type(key), types[i].type);
                assert_string_equal(paf_acme_key_alg(key), types[i].alg);

                char *pem;
                size_t size;
                assert_int_equal(paf_acme_key_save_pem(key, &pem, &size, &err), 0);
                assert_int_equal(strlen(pem), size);
                assert_true(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
                assert_int_equal(paf_acme_key_load_pem(pem, size, &again, &err), 0);
                assert_int_equal(paf_acme_key_get_type(again), types[i].type);

                char *t1, *t2;
                assert_int_equal(paf_acme_key_thumbprint(key, &t1, &err), 0);
                assert_int_equal(paf_acme_key_thumbprint(again, &t2, &err), 0);
                assert_string_equal(t1, t2);
                json_t *jwk;
                assert_int_equal(paf_acme_key_jwk(key, &jwk, &err), 0);
                if (types[i].crv) {
                        assert_string_equal(json_string_value(json_object_get(jwk, "crv")),
                                            types[i].crv);
                        size_t n, want = types[i].type == PAF_ACME_KEY_P256 ? 32 : 48;
                        uint8_t *d = b64d(json_string_value(json_object_get(jwk, "y")), &n);
                        assert_int_equal(n, want);
                        free(d);
                } else {
                        size_t n;
                        uint8_t *d = b64d(json_string_value(json_object_get(jwk, "n")), &n);
                        assert_int_equal(n, 256);
                        assert_int_not_equal(d[0], 0);
                        free(d);
                }
                json_decref(jwk);
                free(t1);
                free(t2);
                free(pem);
                paf_acme_key_free(key);
                paf_acme_key_free(again);
        }

        paf_acme_key *k = NULL;
        assert_int_equal(paf_acme_key_load_pem(key_rsa2048, 0, &k, NULL), -EINVAL);
        assert_null(k);

        paf_acme_key_type t;
        assert_int_equal(paf_acme_key_type_from_string("rsa3072", &t, NULL), 0);
        assert_int_equal(t, PAF_ACME_KEY_RSA3072);
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_key_type_from_string("ed25519", &t, &err), -EINVAL);
        assert_non_null(strstr(err.message, "\"ed25519\""));
}

static void test_key_load_errors(void **state) {
        static const struct {
                const char *pem;
                int r;
                const char *why;
        } bad[] = {
                {"not a key", -EINVAL, "private key: not a usable PEM key"},
                {key_rsa1024, -EOPNOTSUPP, "RSA key of 1024 bits: too small"},
                {key_ed25519, -EOPNOTSUPP, "EdDSA (Ed25519) keys not supported"},
                {key_p521, -EOPNOTSUPP, "EC curve SECP521R1 not supported"},
        };
        (void)state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                paf_acme_key *key = (paf_acme_key *)&bad;
                paf_error err = PAF_ERROR_NULL;
                assert_int_equal(paf_acme_key_load_pem(bad[i].pem, strlen(bad[i].pem), &key, &err),
                                 bad[i].r);
                assert_ptr_equal(key, &bad);
                if (!strstr(err.message, bad[i].why))
                        fail_msg("message \"%s\" lacks \"%s\"", err.message, bad[i].why);
        }
}

/* A JWK's public key, imported the way a server would. */
static gnutls_pubkey_t pubkey_from_jwk(const json_t *jwk) {
        gnutls_pubkey_t pub;
        assert_int_equal(gnutls_pubkey_init(&pub), 0);
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *a = kty[0] == 'E' ? "x" : "n", *b = kty[0] == 'E' ? "y" : "e";
        size_t na, nb;
        gnutls_datum_t da, db;
        da.data = b64d(json_string_value(json_object_get(jwk, a)), &na);
        db.data = b64d(json_string_value(json_object_get(jwk, b)), &nb);
        da.size = (unsigned)na;
        db.size = (unsigned)nb;
        if (kty[0] == 'E') {
                const char *crv = json_string_value(json_object_get(jwk, "crv"));
                gnutls_ecc_curve_t c = strcmp(crv, "P-256") == 0 ? GNUTLS_ECC_CURVE_SECP256R1
                                                                 : GNUTLS_ECC_CURVE_SECP384R1;
                assert_int_equal(gnutls_pubkey_import_ecc_raw(pub, c, &da, &db), 0);
        } else
                assert_int_equal(gnutls_pubkey_import_rsa_raw(pub, &da, &db), 0);
        free(da.data);
        free(db.data);
        return pub;
}

/* Verifies jws as a server would: protected '.' payload, against the key's
 * JWK, the raw r || s of ES* turned back into DER. Returns the GnuTLS result,
 * with the input corrupted when corrupt is set. */
static int verify(const json_t *jws, const json_t *jwk, const char *alg, bool corrupt) {
        const char *p64 = json_string_value(json_object_get(jws, "protected"));
        const char *pl64 = json_string_value(json_object_get(jws, "payload"));
        const char *s64 = json_string_value(json_object_get(jws, "signature"));
        assert_non_null(p64);
        assert_non_null(pl64);
        assert_non_null(s64);
        assert_int_equal(json_object_size(jws), 3);

        char *input;
        assert_true(asprintf(&input, "%s.%s", p64, pl64) > 0);
        if (corrupt)
                input[0] ^= 1;
        size_t n;
        uint8_t *sig = b64d(s64, &n);
        gnutls_datum_t data = {(unsigned char *)input, (unsigned)strlen(input)};
        gnutls_datum_t der = {NULL, 0}, raw = {sig, (unsigned)n};
        gnutls_sign_algorithm_t sa;
        if (strcmp(alg, "RS256") == 0) {
                sa = GNUTLS_SIGN_RSA_SHA256;
        } else {
                size_t size = strcmp(alg, "ES256") == 0 ? 32 : 48;
                sa = size == 32 ? GNUTLS_SIGN_ECDSA_SHA256 : GNUTLS_SIGN_ECDSA_SHA384;
                assert_int_equal(n, 2 * size);
                gnutls_datum_t r = {sig, (unsigned)size}, s = {sig + size, (unsigned)size};
                assert_int_equal(gnutls_encode_rs_value(&der, &r, &s), 0);
                raw = der;
        }
        gnutls_pubkey_t pub = pubkey_from_jwk(jwk);
        int r = gnutls_pubkey_verify_data2(pub, sa, 0, &data, &raw);
        gnutls_pubkey_deinit(pub);
        gnutls_free(der.data);
        free(sig);
        free(input);
        return r;
}

static json_t *decode_json(const char *b64) {
        size_t n;
        uint8_t *d = b64d(b64, &n);
        json_error_t je;
        json_t *j = json_loadb((char *)d, n, 0, &je);
        if (!j)
                fail_msg("\"%s\": %s", (char *)d, je.text);
        free(d);
        return j;
}

/* Whether a raw r || s signature has an r or s with a leading zero byte:
 * the ones that need the padding. */
static bool has_short_half(const json_t *jws, size_t size) {
        size_t n;
        uint8_t *sig = b64d(json_string_value(json_object_get(jws, "signature")), &n);
        bool r = n == 2 * size && (sig[0] == 0 || sig[size] == 0);
        free(sig);
        return r;
}

/* Signs rounds times at least; with want_short, goes on (up to max_rounds)
 * until some signature had an r or s shorter than the curve size (1 in 128
 * per signature), so the zero padding is verified too. */
static void check_jws(paf_acme_key *key, unsigned rounds, unsigned max_rounds, bool want_short) {
        json_t *jwk, *payload = json_pack("{s:[s], s:b}", "contact", "mailto:a@paf.test",
                                          "termsOfServiceAgreed", 1);
        paf_error err = PAF_ERROR_NULL;
        const char *alg = paf_acme_key_alg(key);
        assert_int_equal(paf_acme_key_jwk(key, &jwk, &err), 0);

        bool seen_short = false;
        size_t half = strcmp(alg, "ES256") == 0 ? 32 : 48;
        for (unsigned i = 0; i < rounds || (want_short && !seen_short && i < max_rounds); i++) {
                json_t *jws;
                assert_int_equal(paf_acme_jws_sign(key, "https://ca.test/acct/7", "n0nce",
                                                   "https://ca.test/new-order", payload, &jws,
                                                   &err),
                                 0);
                assert_int_equal(verify(jws, jwk, alg, false), 0);
                seen_short = seen_short || has_short_half(jws, half);
                if (i == 0) {
                        assert_int_not_equal(verify(jws, jwk, alg, true), 0);
                        json_t *h =
                                decode_json(json_string_value(json_object_get(jws, "protected")));
                        assert_int_equal(json_object_size(h), 4);
                        assert_string_equal(json_string_value(json_object_get(h, "alg")), alg);
                        assert_string_equal(json_string_value(json_object_get(h, "kid")),
                                            "https://ca.test/acct/7");
                        assert_string_equal(json_string_value(json_object_get(h, "nonce")),
                                            "n0nce");
                        assert_string_equal(json_string_value(json_object_get(h, "url")),
                                            "https://ca.test/new-order");
                        json_decref(h);
                        json_t *p = decode_json(json_string_value(json_object_get(jws, "payload")));
                        assert_true(json_equal(p, payload));
                        json_decref(p);
                }
                json_decref(jws);
        }
        if (want_short)
                assert_true(seen_short);

        /* jwk form (newAccount), without a nonce (keyChange's inner JWS),
         * POST-as-GET payload. */
        json_t *jws;
        assert_int_equal(
                paf_acme_jws_sign(key, NULL, NULL, "https://ca.test/new-acct", NULL, &jws, &err),
                0);
        assert_string_equal(json_string_value(json_object_get(jws, "payload")), "");
        json_t *h = decode_json(json_string_value(json_object_get(jws, "protected")));
        assert_int_equal(json_object_size(h), 3);
        assert_true(json_equal(json_object_get(h, "jwk"), jwk));
        assert_null(json_object_get(h, "kid"));
        assert_null(json_object_get(h, "nonce"));
        /* The server takes the key from the header it verifies. */
        assert_int_equal(verify(jws, json_object_get(h, "jwk"), alg, false), 0);
        json_decref(h);
        json_decref(jws);

        jws = (json_t *)"untouched";
        assert_int_equal(paf_acme_jws_sign(key, NULL, "n", NULL, NULL, &jws, &err), -EINVAL);
        assert_string_equal((char *)jws, "untouched");
        assert_non_null(strstr(err.message, "URL"));

        json_decref(payload);
        json_decref(jwk);
}

static void test_jws_es256(void **state) {
        (void)state;
        paf_acme_key *key = load(key_p256_x0);
        check_jws(key, 1, 4000, true);
        paf_acme_key_free(key);
}

static void test_jws_es384(void **state) {
        (void)state;
        paf_acme_key *key = NULL;
        assert_int_equal(paf_acme_key_generate(PAF_ACME_KEY_P384, &key, NULL), 0);
        check_jws(key, 8, 0, false);
        paf_acme_key_free(key);
}

static void test_jws_rs256(void **state) {
        (void)state;
        paf_acme_key *key = load(key_rsa2048);
        check_jws(key, 2, 0, false);
        paf_acme_key_free(key);
}

/* RFC 8555 §7.3.4 with the MAC key of RFC 4231 test case 2 ("Jefe"). */
static void test_eab_hs256(void **state) {
        (void)state;
        paf_acme_key *key = load(key_p256_y0);
        paf_error err = PAF_ERROR_NULL;
        json_t *eab, *jwk;
        assert_int_equal(
                paf_acme_eab_sign(key, "kid-1", "SmVmZQ", "https://ca.test/new-acct", &eab, &err),
                0);
        assert_int_equal(paf_acme_key_jwk(key, &jwk, &err), 0);
        assert_int_equal(json_object_size(eab), 3);

        const char *p64 = json_string_value(json_object_get(eab, "protected"));
        const char *pl64 = json_string_value(json_object_get(eab, "payload"));
        json_t *h = decode_json(p64), *p = decode_json(pl64);
        assert_int_equal(json_object_size(h), 3);
        assert_string_equal(json_string_value(json_object_get(h, "alg")), "HS256");
        assert_string_equal(json_string_value(json_object_get(h, "kid")), "kid-1");
        assert_string_equal(json_string_value(json_object_get(h, "url")),
                            "https://ca.test/new-acct");
        assert_true(json_equal(p, jwk));

        char *input;
        uint8_t mac[32];
        assert_true(asprintf(&input, "%s.%s", p64, pl64) > 0);
        assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, "Jefe", 4, input, strlen(input), mac),
                         0);
        size_t n;
        uint8_t *sig = b64d(json_string_value(json_object_get(eab, "signature")), &n);
        assert_int_equal(n, 32);
        assert_memory_equal(sig, mac, 32);
        free(sig);
        free(input);

        /* The HMAC primitive itself: RFC 4231 §4.3. */
        static const uint8_t tc2[32] = {
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
        };
        const char *what = "what do ya want for nothing?";
        assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, "Jefe", 4, what, strlen(what), mac),
                         0);
        assert_memory_equal(mac, tc2, 32);

        json_decref(h);
        json_decref(p);
        json_decref(jwk);
        json_decref(eab);

        eab = (json_t *)"untouched";
        assert_int_equal(
                paf_acme_eab_sign(key, "kid-1", "SmVmZQ==", "https://ca.test/n", &eab, &err),
                -EINVAL);
        assert_string_equal(err.message,
                            "external account binding: HMAC key: base64url: padding '=' at "
                            "offset 6 (RFC 7515 forbids it)");
        assert_int_equal(paf_acme_eab_sign(key, "kid-1", "", "https://ca.test/n", &eab, &err),
                         -EINVAL);
        assert_non_null(strstr(err.message, "empty HMAC key"));
        assert_int_equal(paf_acme_eab_sign(key, NULL, "SmVmZQ", "https://ca.test/n", &eab, &err),
                         -EINVAL);
        assert_string_equal((char *)eab, "untouched");
        paf_acme_key_free(key);
}

static void test_key_authorization(void **state) {
        (void)state;
        paf_acme_key *key = load(key_p256_x0);
        paf_error err = PAF_ERROR_NULL;
        char *t, *ka, *expected;
        assert_int_equal(paf_acme_key_thumbprint(key, &t, &err), 0);
        assert_int_equal(strlen(t), 43);
        const char *token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
        assert_int_equal(paf_acme_key_authorization(key, token, &ka, &err), 0);
        assert_true(asprintf(&expected, "%s.%s", token, t) > 0);
        assert_string_equal(ka, expected);

        uint8_t d[PAF_ACME_TLS_ALPN01_DIGEST_SIZE], want[32];
        assert_int_equal(paf_acme_tls_alpn01_digest(ka, d, &err), 0);
        assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, expected, strlen(expected), want), 0);
        assert_memory_equal(d, want, 32);

        /* A token goes into a path: nothing but base64url. */
        static const char *const bad[] = {"", "../etc", "a/b", "a.b", "a b", "a%2f"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *untouched = (char *)"untouched";
                assert_false(paf_acme_token_is_valid(bad[i]));
                assert_int_equal(paf_acme_key_authorization(key, bad[i], &untouched, &err),
                                 -EINVAL);
                assert_string_equal(untouched, "untouched");
                assert_non_null(strstr(err.message, "challenge token"));
        }
        assert_false(paf_acme_token_is_valid(NULL));
        free(expected);
        free(ka);
        free(t);
        paf_acme_key_free(key);
}

static void check_csr(paf_acme_key *key, gnutls_sign_algorithm_t want_sign) {
        static const char *const ids[] = {"paf.test",  "www.paf.test", "*.paf.test",
                                          "127.0.0.1", "::1",          "2001:db8::7"};
        paf_error err = PAF_ERROR_NULL;
        uint8_t *der;
        size_t der_size;
        char *b64;
        assert_int_equal(paf_acme_csr(key, ids, 6, &der, &der_size, &b64, &err), 0);
        size_t n;
        uint8_t *d = b64d(b64, &n);
        assert_int_equal(n, der_size);
        assert_memory_equal(d, der, n);
        free(d);

        gnutls_x509_crq_t crq;
        gnutls_datum_t dd = {der, (unsigned)der_size};
        assert_int_equal(gnutls_x509_crq_init(&crq), 0);
        assert_int_equal(gnutls_x509_crq_import(crq, &dd, GNUTLS_X509_FMT_DER), 0);
        assert_int_equal(gnutls_x509_crq_verify(crq, 0), 0);
        assert_int_equal(gnutls_x509_crq_get_signature_algorithm(crq), (int)want_sign);

        /* The request carries the key's public half. */
        gnutls_pubkey_t pub;
        json_t *jwk, *want;
        assert_int_equal(gnutls_pubkey_init(&pub), 0);
        assert_int_equal(gnutls_pubkey_import_x509_crq(pub, crq, 0), 0);
        assert_int_equal(paf_acme_jwk_from_pubkey(pub, &jwk, &err), 0);
        assert_int_equal(paf_acme_key_jwk(key, &want, &err), 0);
        assert_true(json_equal(jwk, want));
        json_decref(jwk);
        json_decref(want);
        gnutls_pubkey_deinit(pub);

        unsigned i;
        for (i = 0;; i++) {
                char buf[256];
                size_t size = sizeof(buf);
                unsigned critical;
                int type =
                        gnutls_x509_crq_get_subject_alt_name(crq, i, buf, &size, NULL, &critical);
                if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                assert_true(i < 6);
                uint8_t addr[16];
                if (inet_pton(AF_INET, ids[i], addr) == 1) {
                        assert_int_equal(type, GNUTLS_SAN_IPADDRESS);
                        assert_int_equal(size, 4);
                        assert_memory_equal(buf, addr, 4);
                } else if (inet_pton(AF_INET6, ids[i], addr) == 1) {
                        assert_int_equal(type, GNUTLS_SAN_IPADDRESS);
                        assert_int_equal(size, 16);
                        assert_memory_equal(buf, addr, 16);
                } else {
                        assert_int_equal(type, GNUTLS_SAN_DNSNAME);
                        assert_int_equal(size, strlen(ids[i]));
                        assert_memory_equal(buf, ids[i], size);
                }
        }
        assert_int_equal(i, 6);
        gnutls_x509_crq_deinit(crq);
        free(der);
        free(b64);
}

static void test_csr(void **state) {
        (void)state;
        paf_acme_key *key = NULL;
        assert_int_equal(paf_acme_key_generate(PAF_ACME_KEY_P256, &key, NULL), 0);
        check_csr(key, GNUTLS_SIGN_ECDSA_SHA256);
        paf_acme_key_free(key);
        assert_int_equal(paf_acme_key_generate(PAF_ACME_KEY_P384, &key, NULL), 0);
        check_csr(key, GNUTLS_SIGN_ECDSA_SHA384);
        paf_acme_key_free(key);
        key = load(key_rsa2048);
        check_csr(key, GNUTLS_SIGN_RSA_SHA256);

        /* Only the b64url form, as finalize wants it. */
        const char *one = "paf.test";
        char *b64;
        assert_int_equal(paf_acme_csr(key, &one, 1, NULL, NULL, &b64, NULL), 0);
        assert_null(strpbrk(b64, "+/="));
        free(b64);

        static const char *const bad[] = {"",  "bad name", "-paf.test", "paf-.test", "a..test",
                                          "*", "a.*.test", "paf.test.", "1.2.3.4/8"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const char *ids[] = {"paf.test", bad[i]};
                paf_error err = PAF_ERROR_NULL;
                b64 = (char *)"untouched";
                assert_int_equal(paf_acme_csr(key, ids, 2, NULL, NULL, &b64, &err), -EINVAL);
                assert_string_equal(b64, "untouched");
                char want[64];
                snprintf(want, sizeof(want), "identifier \"%s\"", bad[i]);
                if (!strstr(err.message, want))
                        fail_msg("message \"%s\" lacks \"%s\"", err.message, want);
        }
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_csr(key, NULL, 0, NULL, NULL, &b64, &err), -EINVAL);
        assert_string_equal(err.message, "CSR: no identifier");
        paf_acme_key_free(key);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_b64url_vectors),
                cmocka_unit_test(test_b64url_strict),
                cmocka_unit_test(test_rfc7638_thumbprint),
                cmocka_unit_test(test_ec_jwk_padding),
                cmocka_unit_test(test_key_generate_save_load),
                cmocka_unit_test(test_key_load_errors),
                cmocka_unit_test(test_jws_es256),
                cmocka_unit_test(test_jws_es384),
                cmocka_unit_test(test_jws_rs256),
                cmocka_unit_test(test_eab_hs256),
                cmocka_unit_test(test_key_authorization),
                cmocka_unit_test(test_csr),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
