/* tools/cert.c — `paf cert issue|renew|revoke|show|key-change|deactivate`: certificates from
 * an ACME CA, the challenges answered by paf's own server. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "acme-tool.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: paf cert issue -d NAME [-d NAME…] --acme-url URL --email ADDR --agree-tos\n"
                "                      [--challenge http-01|tls-alpn-01] [--listen ADDR] [OPTIONS]\n"
                "       paf cert renew [NAME…] [--force] [OPTIONS]\n"
                "       paf cert revoke NAME [--reason N] [OPTIONS]\n"
                "       paf cert show [NAME…] [--dir DIR]\n"
                "       paf cert key-change | deactivate [OPTIONS]\n"
                "\n"
                "Obtain, renew, revoke and list certificates from an ACME CA (Let's Encrypt by\n"
                "default). paf answers the CA's challenge itself: http-01 on --listen (default\n"
                "port 80), tls-alpn-01 on a TLS listener at --listen (default port 443).\n"
                "\n"
                "  -d, --domain NAME        A DNS name or IP address (repeatable, or a,b); the\n"
                "                           first names the certificate\n"
                "  --acme-url URL           The CA's ACME directory\n"
                "  --acme-staging           Let's Encrypt's staging directory\n"
                "  --cacert FILE            Trust these CAs for the ACME server\n"
                "  --email ADDR             Account contact (repeatable)\n"
                "  --agree-tos              Agree to the CA's terms of service\n"
                "  --challenge TYPE         http-01 (default) or tls-alpn-01\n"
                "  --listen ADDR            Where the challenge is answered (an address as\n"
                "                           paf serve --listen takes; default 80 or 443)\n"
                "  --dir DIR                State directory: DIR/NAME/fullchain.pem, key.pem\n"
                "                           (default: $STATE_DIRECTORY/acme, /var/lib/paf/acme\n"
                "                           for root, ~/.local/state/paf/acme otherwise)\n"
                "  --key-type TYPE          Certificate key: p256 (default), p384, rsa2048,\n"
                "                           rsa3072\n"
                "  --account-key-type TYPE  Key of a new account (default p256)\n"
                "  --keep-key               Renewals keep the certificate key\n"
                "  --preferred-chain CN     Prefer the chain topped by this issuer\n"
                "  --eab-kid KID            External account binding: key identifier\n"
                "  --eab-hmac-key KEY       External account binding: HMAC key (base64url)\n"
                "  --force                  issue, renew: order even if the stored one is good\n"
                "  --reason N               revoke: RFC 5280 reason code (default 0)\n"
                "  --timeout SECS           Give up after SECS (default 600)\n"
                "  --config FILE            paf.conf: plugins, [acme] defaults, [tls]\n"
                "  -v, --verbose            Show each step\n"
                "  --help                   Show this help\n"
                "\n"
                "A stored certificate for the same names that is not due for renewal is\n"
                "kept: issue and renew then make no order. Exit status: 0 done, 1 failed,\n"
                "2 usage.\n");
}

enum {
        OPT_LISTEN = 2048,
        OPT_FORCE,
        OPT_REASON,
        OPT_TIMEOUT,
};

typedef struct cert_cmd {
        const char *sub;
        tool_acme acme;
        const char *listen;
        const char *config;
        bool force;
        int reason;
        uint64_t timeout_usec;
        const char *args[TOOL_ACME_MAX_NAMES];
        size_t n_args;

        paf_registry *reg;
        sd_event *event;
        paf_http_server *server;
        paf_acme_http01 *http01;
        paf_acme_tlsalpn *tlsalpn;
        paf_acme_http01_chain *chain;
        paf_acme_client *client;
        paf_acme_options options;

        /* The worker thread's job and result. */
        int done_fd;
        int status;
} cert_cmd;

/* ---- the challenge server ---- */

static void on_other_request(paf_http_request *req, void *userdata) {
        (void)userdata;
        static const char body[] = "paf cert: only ACME challenges are answered here\n";
        paf_http_respond(req, 404, "text/plain; charset=utf-8", body, sizeof(body) - 1);
}

static int listen_challenge(cert_cmd *cc) {
        bool tls = cc->options.challenge == PAF_ACME_CHALLENGE_TLSALPN01;
        const char *address = cc->listen ? cc->listen : tls ? "443" : "80";
        paf_error error = PAF_ERROR_NULL;
        int r = paf_http_server_new(cc->event, paf_acme_http01_chain_handler,
                                    paf_acme_http01_chain_error_handler, cc->chain, &cc->server);
        if (r < 0) {
                tool_error("cannot set up the challenge server: %s", strerror(-r));
                return r;
        }
        paf_listener *l = NULL;
        r = paf_registry_listen_address(cc->reg, address, cc->event, NULL, NULL, &l, &error);
        if (r < 0) {
                tool_error("--listen \"%s\": %s", address,
                           error.message[0] ? error.message : strerror(-r));
                return r;
        }
        if (tls) {
                _paf_cleanup_(paf_ctx_unrefp) paf_ctx *ctx = NULL;
                r = paf_ctx_new(&ctx);
                if (r >= 0)
                        /* tls.so takes its own reference. */
                        r = paf_ctx_set_pointer(ctx, "tls.acme-tlsalpn", cc->tlsalpn, NULL);
                if (r < 0) {
                        paf_listener_free(l);
                        tool_error("%s", strerror(-r));
                        return r;
                }
                paf_listener *inner = l;
                l = NULL;
                r = paf_registry_wrap_listener(cc->reg, "tls", inner, ctx, &l, &error);
                if (r < 0) {
                        tool_error("--listen \"%s\": TLS for tls-alpn-01: %s", address,
                                   error.message[0] ? error.message : strerror(-r));
                        return r;
                }
        }
        r = paf_http_server_add_listener(cc->server, l);
        if (r < 0) {
                tool_error("--listen \"%s\": %s", address, strerror(-r));
                return r;
        }
        paf_log(PAF_LOG_INFO, "paf cert: answering %s challenges on %s",
                paf_acme_challenge_type_to_string(cc->options.challenge), address);
        return 0;
}

/* ---- the work, on a thread while the loop serves the challenges ---- */

static void print_cert(const paf_acme_cert *cert, const char *what) {
        char until[64], renew[64];
        tool_acme_format_time(cert->not_after, until, sizeof(until));
        tool_acme_format_time(cert->renew_at, renew, sizeof(renew));
        for (char **p = cert->identifiers; *p; p++)
                printf("%s%s", p == cert->identifiers ? "" : " ", *p);
        printf(": %s, valid until %s (serial %s), renewal at %s\n", what, until, cert->serial,
               renew);
        printf("  certificate: %s\n  key:         %s\n", cert->fullchain_path, cert->key_path);
        fflush(stdout);
}

static int do_issue(cert_cmd *cc) {
        paf_error error = PAF_ERROR_NULL;
        paf_acme_cert *cert = NULL;
        int r = paf_acme_issue(cc->client, cc->acme.names, cc->acme.n_names,
                               cc->force ? PAF_ACME_ISSUE_FORCE : 0, &cert, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                return 1;
        }
        print_cert(cert, cert->reused ? "stored certificate still good, kept" : "issued");
        paf_acme_cert_free(cert);
        return 0;
}

/* Every stored certificate named (all when none is), renewed if due. */
static int do_renew(cert_cmd *cc) {
        paf_error error = PAF_ERROR_NULL;
        char **names = NULL;
        int status = 0;
        if (cc->n_args == 0) {
                int r = paf_acme_cert_list(cc->options.state_dir, &names, &error);
                if (r < 0) {
                        tool_error("%s", error.message);
                        return 1;
                }
                if (!names[0])
                        tool_error("%s: no certificate to renew", cc->options.state_dir);
        }
        size_t n = names ? 0 : cc->n_args;
        while (names && names[n])
                n++;
        for (size_t i = 0; i < n; i++) {
                const char *name = names ? names[i] : cc->args[i];
                paf_acme_cert *stored = NULL;
                error = (paf_error)PAF_ERROR_NULL;
                int r = paf_acme_cert_load(cc->options.state_dir, name, &stored, &error);
                if (r < 0) {
                        tool_error("%s", error.message);
                        status = 1;
                        continue;
                }
                if (strcmp(stored->directory_url, cc->options.directory_url) != 0 &&
                    !cc->acme.url && !cc->acme.staging) {
                        /* Renewed where it came from. */
                        paf_acme_options o = cc->options;
                        o.directory_url = stored->directory_url;
                        paf_acme_client *other = NULL;
                        r = paf_acme_client_new(cc->reg, &o, &other, &error);
                        if (r >= 0) {
                                paf_acme_client *mine = cc->client;
                                cc->client = other;
                                size_t k = 0;
                                while (stored->identifiers[k])
                                        k++;
                                paf_acme_cert *cert = NULL;
                                r = paf_acme_issue(other, (const char *const *)stored->identifiers,
                                                   k, cc->force ? PAF_ACME_ISSUE_FORCE : 0, &cert,
                                                   &error);
                                if (r >= 0) {
                                        print_cert(cert, cert->reused ? "not due" : "renewed");
                                        paf_acme_cert_free(cert);
                                }
                                cc->client = mine;
                                paf_acme_client_free(other);
                        }
                } else {
                        size_t k = 0;
                        while (stored->identifiers[k])
                                k++;
                        paf_acme_cert *cert = NULL;
                        r = paf_acme_issue(cc->client, (const char *const *)stored->identifiers, k,
                                           cc->force ? PAF_ACME_ISSUE_FORCE : 0, &cert, &error);
                        if (r >= 0) {
                                print_cert(cert, cert->reused ? "not due" : "renewed");
                                paf_acme_cert_free(cert);
                        }
                }
                if (r < 0) {
                        tool_error("%s: %s", name, error.message[0] ? error.message : strerror(-r));
                        status = 1;
                }
                paf_acme_cert_free(stored);
        }
        paf_acme_strv_free(names);
        return status;
}

static int do_revoke(cert_cmd *cc) {
        paf_error error = PAF_ERROR_NULL;
        int r = paf_acme_revoke(cc->client, cc->args[0], cc->reason, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                return 1;
        }
        printf("%s: revoked (reason %d)\n", cc->args[0], cc->reason);
        return 0;
}

static int do_account(cert_cmd *cc) {
        paf_error error = PAF_ERROR_NULL;
        bool change = strcmp(cc->sub, "key-change") == 0;
        int r = change ? paf_acme_account_key_change(cc->client, &error)
                       : paf_acme_account_deactivate(cc->client, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                return 1;
        }
        printf("%s: account %s\n", cc->options.directory_url,
               change ? "key replaced" : "deactivated");
        return 0;
}

static void *worker(void *arg) {
        cert_cmd *cc = arg;
        if (strcmp(cc->sub, "issue") == 0)
                cc->status = do_issue(cc);
        else if (strcmp(cc->sub, "renew") == 0)
                cc->status = do_renew(cc);
        else if (strcmp(cc->sub, "revoke") == 0)
                cc->status = do_revoke(cc);
        else
                cc->status = do_account(cc);
        uint64_t one = 1;
        (void)!write(cc->done_fd, &one, sizeof(one));
        return NULL;
}

static int on_worker_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)fd;
        (void)revents;
        (void)userdata;
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        cert_cmd *cc = userdata;
        (void)s;
        (void)si;
        tool_error("interrupted");
        paf_acme_client_cancel(cc->client);
        return 0;
}

/* ---- show ---- */

static void show_one(const paf_acme_cert *c) {
        char until[64], renew[64], from[64];
        tool_acme_format_time(c->not_before, from, sizeof(from));
        tool_acme_format_time(c->not_after, until, sizeof(until));
        tool_acme_format_time(c->renew_at, renew, sizeof(renew));
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t left = (int64_t)(c->not_after / 1000000) - (int64_t)ts.tv_sec;
        printf("%s\n", c->name);
        printf("  names:     ");
        for (char **p = c->identifiers; *p; p++)
                printf("%s%s", p == c->identifiers ? "" : " ", *p);
        printf("\n  issuer:    %s\n  serial:    %s\n  valid:     %s to %s", c->issuer, c->serial,
               from, until);
        if (c->revoked)
                printf(" (REVOKED)\n");
        else if (left < 0)
                printf(" (EXPIRED)\n");
        else if (left >= 86400)
                printf(" (%" PRId64 " days left)\n", left / 86400);
        else
                printf(" (%" PRId64 " s left)\n", left);
        printf("  renewal:   %s\n  directory: %s\n  files:     %s\n             %s\n", renew,
               c->directory_url, c->fullchain_path, c->key_path);
}

static int cmd_show(cert_cmd *cc) {
        paf_error error = PAF_ERROR_NULL;
        char **names = NULL;
        if (cc->n_args == 0 && paf_acme_cert_list(cc->acme.dir, &names, &error) < 0) {
                tool_error("%s", error.message);
                return 1;
        }
        size_t n = names ? 0 : cc->n_args;
        while (names && names[n])
                n++;
        if (names && n == 0)
                printf("%s: no certificate\n", cc->acme.dir);
        int status = 0;
        for (size_t i = 0; i < n; i++) {
                paf_acme_cert *c = NULL;
                error = (paf_error)PAF_ERROR_NULL;
                if (paf_acme_cert_load(cc->acme.dir, names ? names[i] : cc->args[i], &c,
                                       &error) < 0) {
                        tool_error("%s", error.message);
                        status = 1;
                        continue;
                }
                if (i > 0)
                        printf("\n");
                show_one(c);
                paf_acme_cert_free(c);
        }
        paf_acme_strv_free(names);
        return status;
}

/* ---- the command ---- */

int cmd_cert(int argc, char **argv) {
        static const struct option options[] = {
                {"domain", required_argument, NULL, TOOL_ACME_NAME},
                {"acme-url", required_argument, NULL, TOOL_ACME_URL},
                {"acme-staging", no_argument, NULL, TOOL_ACME_STAGING},
                {"cacert", required_argument, NULL, TOOL_ACME_CACERT},
                {"email", required_argument, NULL, TOOL_ACME_EMAIL},
                {"agree-tos", no_argument, NULL, TOOL_ACME_AGREE_TOS},
                {"challenge", required_argument, NULL, TOOL_ACME_CHALLENGE},
                {"dir", required_argument, NULL, TOOL_ACME_DIR},
                {"key-type", required_argument, NULL, TOOL_ACME_KEY_TYPE},
                {"account-key-type", required_argument, NULL, TOOL_ACME_ACCOUNT_KEY_TYPE},
                {"keep-key", no_argument, NULL, TOOL_ACME_KEEP_KEY},
                {"preferred-chain", required_argument, NULL, TOOL_ACME_PREFERRED_CHAIN},
                {"eab-kid", required_argument, NULL, TOOL_ACME_EAB_KID},
                {"eab-hmac-key", required_argument, NULL, TOOL_ACME_EAB_HMAC_KEY},
                {"listen", required_argument, NULL, OPT_LISTEN},
                {"force", no_argument, NULL, OPT_FORCE},
                {"reason", required_argument, NULL, OPT_REASON},
                {"timeout", required_argument, NULL, OPT_TIMEOUT},
                {"config", required_argument, NULL, 'c'},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        static const char *const subs[] = {"issue", "renew", "revoke", "show", "key-change",
                                           "deactivate"};
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                usage(stdout);
                return 0;
        }
        if (argc < 2)
                return tool_usage_error("what to do? (issue, renew, revoke, show, key-change, "
                                        "deactivate)");
        cert_cmd cc = {.sub = argv[1], .done_fd = -1, .status = 1};
        bool known = false;
        for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
                known = known || strcmp(cc.sub, subs[i]) == 0;
        if (!known)
                return tool_usage_error("unknown subcommand \"%s\" (issue, renew, revoke, show, "
                                        "key-change, deactivate)",
                                        cc.sub);
        argc--;
        argv++;
        int c, ret = 0;
        bool verbose = false;
        while ((c = getopt_long(argc, argv, ":d:c:vh", options, NULL)) >= 0) {
                switch (c) {
                case 'd':
                        ret = tool_acme_option(&cc.acme, TOOL_ACME_NAME, optarg);
                        break;
                case OPT_LISTEN:
                        cc.listen = optarg;
                        break;
                case OPT_FORCE:
                        cc.force = true;
                        break;
                case OPT_REASON: {
                        char *end;
                        long v = strtol(optarg, &end, 10);
                        if (*optarg == 0 || *end || v < 0 || v > 10 || v == 7)
                                ret = tool_usage_error("--reason \"%s\": an RFC 5280 reason "
                                                       "code, 0 to 10 but 7",
                                                       optarg);
                        cc.reason = (int)v;
                        break;
                }
                case OPT_TIMEOUT: {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*optarg == 0 || *end || v == 0 || v > 86400)
                                ret = tool_usage_error("--timeout \"%s\": seconds, 1 to 86400",
                                                       optarg);
                        cc.timeout_usec = (uint64_t)v * 1000000;
                        break;
                }
                case 'c':
                        cc.config = optarg;
                        break;
                case 'v':
                        verbose = true;
                        break;
                case 'h':
                        usage(stdout);
                        tool_acme_done(&cc.acme);
                        return 0;
                default:
                        if (tool_acme_option(&cc.acme, c, optarg) == -EINVAL)
                                ret = tool_bad_option(c, argv, options);
                }
                if (ret) {
                        tool_acme_done(&cc.acme);
                        return ret;
                }
        }
        for (int i = optind; i < argc; i++) {
                if (cc.n_args == TOOL_ACME_MAX_NAMES) {
                        tool_acme_done(&cc.acme);
                        return tool_usage_error("too many names");
                }
                cc.args[cc.n_args++] = argv[i];
        }
        if (verbose)
                paf_log_set_level(PAF_LOG_INFO);

        bool is_issue = strcmp(cc.sub, "issue") == 0;
        bool is_renew = strcmp(cc.sub, "renew") == 0;
        bool is_revoke = strcmp(cc.sub, "revoke") == 0;
        if (is_issue && cc.n_args > 0)
                ret = tool_usage_error("issue: names go with -d (unexpected \"%s\")", cc.args[0]);
        else if (is_revoke && cc.n_args != 1)
                ret = tool_usage_error("revoke: one certificate name");
        else if (!is_issue && !is_renew && !is_revoke && strcmp(cc.sub, "show") != 0 &&
                 cc.n_args > 0)
                ret = tool_usage_error("%s: unexpected \"%s\"", cc.sub, cc.args[0]);
        else if (!is_issue && cc.acme.n_names > 0)
                ret = tool_usage_error("%s: -d is for issue; name the certificates as arguments",
                                       cc.sub);
        else if ((cc.listen || cc.acme.challenge) && !is_issue && !is_renew)
                ret = tool_usage_error("%s: --listen and --challenge are for issue and renew",
                                       cc.sub);
        if (ret) {
                tool_acme_done(&cc.acme);
                return ret;
        }

        if (tool_load_registry(cc.config, false, &cc.reg) < 0) {
                tool_acme_done(&cc.acme);
                return 1;
        }
        ret = tool_acme_from_config(&cc.acme, cc.reg);
        if (ret < 0) {
                tool_error("%s: [acme]: %s", cc.config ? cc.config : "configuration",
                           strerror(-ret));
                ret = 1;
                goto out;
        }
        ret = tool_acme_make(&cc.acme, &cc.options);
        if (ret)
                goto out;
        if (strcmp(cc.sub, "show") == 0) {
                ret = cmd_show(&cc);
                goto out;
        }
        if (is_issue && cc.acme.n_names == 0) {
                ret = tool_usage_error("issue: no name (-d NAME)");
                goto out;
        }
        if (!tool_check_plugins(cc.reg)) {
                ret = 1;
                goto out;
        }
        ret = 1;
        int r = paf_acme_http01_new(&cc.http01);
        if (r >= 0)
                r = paf_acme_tlsalpn_new(&cc.tlsalpn);
        if (r >= 0)
                r = paf_acme_http01_chain_new(cc.http01, on_other_request, NULL, &cc,
                                              &cc.chain);
        if (r >= 0)
                r = sd_event_new(&cc.event);
        if (r < 0) {
                tool_error("%s", strerror(-r));
                goto out;
        }
        cc.options.http01 = cc.http01;
        cc.options.tlsalpn = cc.tlsalpn;
        cc.options.timeout_usec = cc.timeout_usec;
        paf_error error = PAF_ERROR_NULL;
        r = paf_acme_client_new(cc.reg, &cc.options, &cc.client, &error);
        if (r < 0) {
                tool_error("%s", error.message[0] ? error.message : strerror(-r));
                goto out;
        }
        if ((is_issue || is_renew) && listen_challenge(&cc) < 0)
                goto out;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        cc.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        r = cc.done_fd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(cc.event, NULL, cc.done_fd, EPOLLIN, on_worker_done, &cc);
        if (r >= 0)
                r = sd_event_add_signal(cc.event, NULL, SIGTERM, on_signal, &cc);
        if (r >= 0)
                r = sd_event_add_signal(cc.event, NULL, SIGINT, on_signal, &cc);
        pthread_t thread;
        if (r >= 0)
                r = -pthread_create(&thread, NULL, worker, &cc);
        if (r < 0) {
                tool_error("cannot start: %s", strerror(-r));
                goto out;
        }
        r = sd_event_loop(cc.event);
        pthread_join(thread, NULL);
        ret = r < 0 ? 1 : cc.status;
out:
        paf_acme_client_free(cc.client);
        paf_http_server_free(cc.server);
        paf_acme_http01_chain_free(cc.chain);
        paf_acme_http01_unref(cc.http01);
        paf_acme_tlsalpn_unref(cc.tlsalpn);
        if (cc.done_fd >= 0)
                close(cc.done_fd);
        sd_event_unref(cc.event);
        paf_registry_unref(cc.reg);
        tool_acme_done(&cc.acme);
        return ret;
}
