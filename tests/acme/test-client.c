/* tests/acme/test-client.c — the ACME client's rules that need no CA: Retry-After, the
 * renewal time without ARI, identifiers and their store names, refused arguments, and the
 * stored certificate read back. (The protocol itself: tests/acme/test-cert-*.sh, against
 * pebble and tests/acme/mock-acme.py.) */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/acme/acme-internal.h"
#include "core/acme/store.h"
#include <paf/registry.h>

#define SEC UINT64_C(1000000)
#define DAY (86400 * SEC)

static void test_retry_after(void **state) {
        (void)state;
        uint64_t w = 0;
        assert_int_equal(paf_acme_parse_retry_after("120", 0, &w), 0);
        assert_true(w == 120 * SEC);
        assert_int_equal(paf_acme_parse_retry_after(" 5 ", 0, &w), 0);
        assert_true(w == 5 * SEC);
        assert_int_equal(paf_acme_parse_retry_after("0", 0, &w), 0);
        assert_true(w == 0);
        /* An HTTP-date (RFC 9110 §5.6.7), from a given now. */
        uint64_t t = UINT64_C(1445412480) * SEC; /* Wed, 21 Oct 2015 07:28:00 GMT */
        assert_int_equal(paf_acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 30 * SEC,
                                                    &w),
                         0);
        assert_true(w == 30 * SEC);
        /* A date passed: no wait. */
        assert_int_equal(paf_acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t + SEC, &w),
                         0);
        assert_true(w == 0);
        /* A server asking for years is waited a week at most (the operation's
         * own time limit still applies). */
        assert_int_equal(paf_acme_parse_retry_after("999999999999", 0, &w), 0);
        assert_true(w == 7 * DAY);
        assert_int_equal(paf_acme_parse_retry_after(NULL, 0, &w), -ENOENT);
        assert_int_equal(paf_acme_parse_retry_after("soon", 0, &w), -EINVAL);
        assert_int_equal(paf_acme_parse_retry_after("5s", 0, &w), -EINVAL);
        assert_int_equal(paf_acme_parse_retry_after("-5", 0, &w), -EINVAL);
        assert_int_equal(paf_acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00", 0, &w), -EINVAL);
}

/* A third of the lifetime left (half for 10 days or less), minus up to a
 * tenth of that, and not always the same time (the jitter). */
static void check_renewal(uint64_t lifetime, uint64_t left) {
        uint64_t nb = UINT64_C(1800000000) * SEC, na = nb + lifetime;
        uint64_t lo = na - left - left / 10, hi = na - left;
        uint64_t first = paf_acme_renewal_time(nb, na);
        bool varies = false;
        for (int i = 0; i < 200; i++) {
                uint64_t at = paf_acme_renewal_time(nb, na);
                assert_true(at >= lo && at <= hi);
                varies = varies || at != first;
        }
        assert_true(varies);
}

static void test_renewal_time(void **state) {
        (void)state;
        check_renewal(90 * DAY, 30 * DAY);
        check_renewal(6 * DAY, 3 * DAY);
        check_renewal(10 * DAY, 5 * DAY);
        check_renewal(11 * DAY, 11 * DAY / 3);
        check_renewal(20 * SEC, 10 * SEC);
        /* Nonsense from a CA: renew at once. */
        assert_true(paf_acme_renewal_time(5 * SEC, 5 * SEC) == 5 * SEC);
        assert_true(paf_acme_renewal_time(9 * SEC, 5 * SEC) == 9 * SEC);
}

static void check_name(const char *id, const char *want) {
        char *name = NULL;
        paf_error err = PAF_ERROR_NULL;
        int r = paf_acme_cert_name(id, &name, &err);
        if (!want) {
                assert_int_equal(r, -EINVAL);
                assert_non_null(strstr(err.message, id[0] ? id : "\""));
                return;
        }
        if (r < 0)
                fail_msg("%s: %s", id, err.message);
        assert_string_equal(name, want);
        free(name);
}

static void test_names(void **state) {
        (void)state;
        check_name("www.Example.COM", "www.example.com");
        check_name("paf.test.", "paf.test");
        check_name("127.0.0.1", "127.0.0.1");
        check_name("2001:DB8:0:0::1", "2001_db8__1");
        check_name("[::1]", "__1");
        check_name("*.example.com", "*.example.com");
        check_name("bad name", NULL);
        check_name("a..b", NULL);
        check_name("../etc", NULL);
        check_name("", NULL);
        check_name("x/y", NULL);
}

static void test_types(void **state) {
        (void)state;
        paf_acme_challenge_type c;
        paf_error err = PAF_ERROR_NULL;
        assert_int_equal(paf_acme_challenge_type_from_string("tls-alpn-01", &c, &err), 0);
        assert_int_equal(c, PAF_ACME_CHALLENGE_TLSALPN01);
        assert_string_equal(paf_acme_challenge_type_to_string(PAF_ACME_CHALLENGE_HTTP01),
                            "http-01");
        assert_int_equal(paf_acme_challenge_type_from_string("dns-01", &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "dns-01"));
        assert_null(paf_acme_challenge_type_to_string(_PAF_ACME_CHALLENGE_TYPE_MAX));
}

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static int setup(void **s) {
        (void)s;
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/paf-test-acme-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        return 0;
}

static int teardown(void **s) {
        (void)s;
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static void test_bad_arguments(void **state) {
        (void)state;
        paf_registry *reg = NULL;
        assert_int_equal(paf_registry_new(&reg), 0);
        char dir[128];
        snprintf(dir, sizeof(dir), "%s/state", tmpdir);
        paf_error err = PAF_ERROR_NULL;
        paf_acme_client *c = NULL;
        paf_acme_options o = {.directory_url = "https://127.0.0.1:1/dir"};
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "state directory"));
        o.state_dir = dir;
        o.eab_kid = "kid-1";
        err = (paf_error)PAF_ERROR_NULL;
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "external account binding"));
        o.eab_kid = NULL;
        const char *const bad_contact[] = {"not an address", NULL};
        o.contact = bad_contact;
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "not an address"));
        o.contact = NULL;
        o.directory_url = "ftp://ca.example/dir";
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "ftp://ca.example/dir"));
        o.directory_url = "https://127.0.0.1:1/dir";

        paf_acme_http01 *t = NULL;
        assert_int_equal(paf_acme_http01_new(&t), 0);
        o.http01 = t;
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), 0);
        /* The state directory exists, private. */
        struct stat st;
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);

        paf_acme_cert *cert = NULL;
        const char *wild[] = {"*.paf.test"};
        err = (paf_error)PAF_ERROR_NULL;
        assert_int_equal(paf_acme_issue(c, wild, 1, 0, &cert, &err), -EINVAL);
        assert_non_null(strstr(err.message, "*.paf.test"));
        assert_non_null(strstr(err.message, "dns-01"));
        const char *twice[] = {"a.paf.test", "A.paf.test"};
        assert_int_equal(paf_acme_issue(c, twice, 2, 0, &cert, &err), -EINVAL);
        assert_non_null(strstr(err.message, "twice"));
        const char *bad[] = {"a.paf.test", "no such/name"};
        assert_int_equal(paf_acme_issue(c, bad, 2, 0, &cert, &err), -EINVAL);
        assert_non_null(strstr(err.message, "no such/name"));
        assert_int_equal(paf_acme_revoke(c, "a.paf.test", 7, &err), -EINVAL);
        assert_non_null(strstr(err.message, "7"));
        /* Nothing stored: revoking names the file it looked for. */
        err = (paf_error)PAF_ERROR_NULL;
        assert_int_equal(paf_acme_revoke(c, "a.paf.test", 0, &err), -ENOENT);
        assert_null(cert);
        paf_acme_client_free(c);

        /* The tls-alpn-01 table is required for that challenge. */
        o.challenge = PAF_ACME_CHALLENGE_TLSALPN01;
        assert_int_equal(paf_acme_client_new(reg, &o, &c, &err), 0);
        const char *one[] = {"a.paf.test"};
        assert_int_equal(paf_acme_issue(c, one, 1, 0, &cert, &err), -EINVAL);
        assert_non_null(strstr(err.message, "tls-alpn-01"));
        paf_acme_client_free(c);
        paf_acme_http01_unref(t);
        paf_registry_unref(reg);
}

/* What paf cert show reads: a stored certificate, without the CA. */
static void test_stored(void **state) {
        (void)state;
        char dir[128], cmd[1024];
        snprintf(dir, sizeof(dir), "%s/state", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(cmd, sizeof(cmd),
                 "set -e; cd %s; mkdir -m 0700 state/www.paf.test;"
                 "certtool --generate-privkey --key-type=ecdsa --no-text --outfile k.pem 2>/dev/null;"
                 "printf 'cn = www.paf.test\\ndns_name = www.paf.test\\ndns_name = paf.test\\n"
                 "serial = 0x00c0ffee\\nexpiration_days = 90\\n' > t.tmpl;"
                 "certtool --generate-self-signed --load-privkey k.pem --template t.tmpl --no-text "
                 "--outfile state/www.paf.test/fullchain.pem 2>/dev/null;"
                 "install -m 0600 k.pem state/www.paf.test/key.pem;"
                 "printf '{\"identifiers\":[\"www.paf.test\",\"paf.test\"],"
                 "\"directory\":\"https://ca.test/dir\",\"renew_at\":2000000000}' "
                 "> state/www.paf.test/meta.json;"
                 /* An IPv6 identifier's name starts with '_' as accounts' does. */
                 "cp -a state/www.paf.test state/__1; mkdir -m 0700 -p state/_accounts/ca.test",
                 tmpdir);
        if (system(cmd) != 0)
                skip();
        paf_error err = PAF_ERROR_NULL;
        char **names = NULL;
        assert_int_equal(paf_acme_cert_list(dir, &names, &err), 0);
        assert_non_null(names[0]);
        assert_string_equal(names[0], "__1");
        assert_non_null(names[1]);
        assert_string_equal(names[1], "www.paf.test");
        assert_null(names[2]);
        paf_acme_strv_free(names);
        paf_acme_cert *c = NULL;
        int r = paf_acme_cert_load(dir, "WWW.paf.test", &c, &err);
        if (r < 0)
                fail_msg("%s", err.message);
        assert_string_equal(c->identifiers[0], "www.paf.test");
        assert_string_equal(c->identifiers[1], "paf.test");
        assert_null(c->identifiers[2]);
        assert_string_equal(c->serial, "c0ffee");
        assert_non_null(strstr(c->issuer, "www.paf.test"));
        assert_true(c->renew_at == UINT64_C(2000000000) * SEC);
        uint64_t life = c->not_after - c->not_before;
        assert_true(life > 89 * DAY && life < 91 * DAY);
        assert_false(c->revoked);
        assert_non_null(strstr(c->fullchain_path, "/state/www.paf.test/fullchain.pem"));
        assert_non_null(strstr(c->key_path, "/state/www.paf.test/key.pem"));
        paf_acme_cert_free(c);
        /* A certificate that is not there names its file. */
        err = (paf_error)PAF_ERROR_NULL;
        assert_int_equal(paf_acme_cert_load(dir, "other.paf.test", &c, &err), -ENOENT);
        assert_non_null(strstr(err.message, "other.paf.test"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_retry_after),
                cmocka_unit_test(test_renewal_time),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_types),
                cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stored, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
