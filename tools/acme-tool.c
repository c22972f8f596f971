/* tools/acme-tool.c — what `paf cert` and `paf serve --acme` share: the ACME options, from the
 * command line over paf.conf's [acme], and the state directory's default. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acme-tool.h"

int tool_acme_option(tool_acme *a, int c, const char *arg) {
        switch (c) {
        case TOOL_ACME_NAME:
                /* -d a -d b, or -d a,b as certbot takes it. */
                for (const char *p = arg; *p;) {
                        size_t n = strcspn(p, ", ");
                        if (n > 0) {
                                if (a->n_names == TOOL_ACME_MAX_NAMES ||
                                    a->n_owned == TOOL_ACME_MAX_OWNED)
                                        return tool_usage_error("more than %d names",
                                                                TOOL_ACME_MAX_NAMES);
                                char *s = strndup(p, n);
                                if (!s)
                                        return tool_usage_error("%s", strerror(ENOMEM));
                                a->owned[a->n_owned++] = s;
                                a->names[a->n_names++] = s;
                        }
                        p += n;
                        p += strspn(p, ", ");
                }
                return 0;
        case TOOL_ACME_EMAIL:
                if (a->n_emails == TOOL_ACME_MAX_EMAILS)
                        return tool_usage_error("more than %d --email", TOOL_ACME_MAX_EMAILS);
                a->emails[a->n_emails++] = arg;
                return 0;
        case TOOL_ACME_URL:
                a->url = arg;
                return 0;
        case TOOL_ACME_STAGING:
                a->staging = 1;
                return 0;
        case TOOL_ACME_CACERT:
                a->cacert = arg;
                return 0;
        case TOOL_ACME_AGREE_TOS:
                a->agree_tos = 1;
                return 0;
        case TOOL_ACME_CHALLENGE:
                a->challenge = arg;
                return 0;
        case TOOL_ACME_KEY_TYPE:
                a->key_type = arg;
                return 0;
        case TOOL_ACME_ACCOUNT_KEY_TYPE:
                a->account_key_type = arg;
                return 0;
        case TOOL_ACME_KEEP_KEY:
                a->keep_key = 1;
                return 0;
        case TOOL_ACME_PREFERRED_CHAIN:
                a->preferred_chain = arg;
                return 0;
        case TOOL_ACME_EAB_KID:
                a->eab_kid = arg;
                return 0;
        case TOOL_ACME_EAB_HMAC_KEY:
                a->eab_hmac_key = arg;
                return 0;
        case TOOL_ACME_DIR:
                a->dir = arg;
                return 0;
        }
        return -EINVAL;
}

static const char *config_string(paf_registry *reg, const char *key) {
        paf_value v;
        if (paf_registry_get_option(reg, "acme", key, &v) >= 0 && v.type == PAF_TYPE_STRING)
                return v.string;
        return NULL;
}

static int config_bool(paf_registry *reg, const char *key) {
        paf_value v;
        if (paf_registry_get_option(reg, "acme", key, &v) >= 0 && v.type == PAF_TYPE_BOOL)
                return v.boolean;
        return 0;
}

/* A space-separated list of paf.conf into words the tool_acme keeps. */
static int config_words(tool_acme *a, const char *s, const char **out, size_t *n, size_t max) {
        for (const char *p = s; p && *p;) {
                size_t len = strcspn(p, " \t,");
                if (len > 0) {
                        if (*n == max || a->n_owned == TOOL_ACME_MAX_OWNED)
                                return -E2BIG;
                        char *w = strndup(p, len);
                        if (!w)
                                return -ENOMEM;
                        a->owned[a->n_owned++] = w;
                        out[(*n)++] = w;
                }
                p += len;
                p += strspn(p, " \t,");
        }
        return 0;
}

int tool_acme_from_config(tool_acme *a, paf_registry *reg) {
        int r = 0;
        if (a->n_names == 0)
                r = config_words(a, config_string(reg, "names"), a->names, &a->n_names,
                                 TOOL_ACME_MAX_NAMES);
        if (r >= 0 && a->n_emails == 0)
                r = config_words(a, config_string(reg, "email"), a->emails, &a->n_emails,
                                 TOOL_ACME_MAX_EMAILS);
        if (r < 0)
                return r;
#define FILL(field, key)                                                                           \
        do {                                                                                       \
                if (!a->field)                                                                     \
                        a->field = config_string(reg, key);                                        \
        } while (0)
        FILL(url, "directory");
        FILL(cacert, "ca-file");
        FILL(challenge, "challenge");
        FILL(key_type, "key-type");
        FILL(account_key_type, "account-key-type");
        FILL(preferred_chain, "preferred-chain");
        FILL(eab_kid, "eab-kid");
        FILL(eab_hmac_key, "eab-hmac-key");
        FILL(dir, "state-dir");
#undef FILL
        if (!a->staging)
                a->staging = config_bool(reg, "staging");
        if (!a->agree_tos)
                a->agree_tos = config_bool(reg, "agree-tos");
        if (!a->keep_key)
                a->keep_key = config_bool(reg, "keep-key");
        paf_value v;
        a->redirect_http = paf_registry_get_option(reg, "acme", "redirect-http", &v) >= 0 &&
                                           v.type == PAF_TYPE_BOOL
                                   ? v.boolean
                                   : true;
        return 0;
}

/* mkdir -p of path's parents (0755): the state directory itself is made
 * 0700 by the store. */
static void mkdir_parents(const char *path) {
        char buf[4096];
        if (strlen(path) >= sizeof(buf))
                return;
        strcpy(buf, path);
        for (char *p = buf + 1; (p = strchr(p, '/')); p++) {
                *p = 0;
                (void)mkdir(buf, 0755);
                *p = '/';
        }
}

char *tool_acme_default_dir(void) {
        char *r = NULL;
        const char *sd = getenv("STATE_DIRECTORY"); /* systemd's StateDirectory= */
        const char *home = getenv("HOME");
        const char *xdg = getenv("XDG_STATE_HOME");
        if (sd && *sd) {
                size_t n = strcspn(sd, ":");
                if (asprintf(&r, "%.*s/acme", (int)n, sd) < 0)
                        r = NULL;
        } else if (geteuid() == 0) {
                r = strdup("/var/lib/paf/acme");
        } else if (xdg && *xdg == '/') {
                if (asprintf(&r, "%s/paf/acme", xdg) < 0)
                        r = NULL;
        } else if (home && *home == '/') {
                if (asprintf(&r, "%s/.local/state/paf/acme", home) < 0)
                        r = NULL;
        } else {
                r = strdup("/var/lib/paf/acme");
        }
        return r;
}

int tool_acme_make(tool_acme *a, paf_acme_options *o) {
        paf_error error = PAF_ERROR_NULL;
        *o = (paf_acme_options){0};
        if (a->url && a->staging)
                return tool_usage_error("--acme-url and --acme-staging: one or the other");
        o->directory_url = a->url ? a->url
                           : a->staging ? PAF_ACME_LETSENCRYPT_STAGING_URL
                                        : PAF_ACME_LETSENCRYPT_URL;
        if (strncasecmp(o->directory_url, "https://", 8) != 0 &&
            strncasecmp(o->directory_url, "http://", 7) != 0)
                return tool_usage_error("--acme-url \"%s\": not an https:// URL",
                                        o->directory_url);
        o->ca_file = a->cacert;
        if (a->cacert && access(a->cacert, R_OK) < 0)
                return tool_usage_error("--cacert \"%s\": %s", a->cacert, strerror(errno));
        if (!a->dir) {
                a->dir_owned = tool_acme_default_dir();
                if (!a->dir_owned)
                        return tool_usage_error("%s", strerror(ENOMEM));
                a->dir = a->dir_owned;
        }
        mkdir_parents(a->dir);
        o->state_dir = a->dir;
        a->emails[a->n_emails] = NULL;
        o->contact = a->emails;
        o->agree_tos = a->agree_tos;
        if (!a->eab_kid != !a->eab_hmac_key)
                return tool_usage_error("--eab-kid and --eab-hmac-key go together");
        o->eab_kid = a->eab_kid;
        o->eab_hmac_key = a->eab_hmac_key;
        if (a->key_type && paf_acme_key_type_from_string(a->key_type, &o->cert_key_type,
                                                         &error) < 0)
                return tool_usage_error("--key-type: %s", error.message);
        if (a->account_key_type &&
            paf_acme_key_type_from_string(a->account_key_type, &o->account_key_type, &error) < 0)
                return tool_usage_error("--account-key-type: %s", error.message);
        if (a->challenge &&
            paf_acme_challenge_type_from_string(a->challenge, &o->challenge, &error) < 0)
                return tool_usage_error("--challenge: %s", error.message);
        o->keep_key = a->keep_key;
        o->preferred_chain = a->preferred_chain;
        return 0;
}

void tool_acme_done(tool_acme *a) {
        for (size_t i = 0; i < a->n_owned; i++)
                free(a->owned[i]);
        free(a->dir_owned);
        *a = (tool_acme){0};
}

void tool_acme_format_time(uint64_t usec, char *buf, size_t size) {
        time_t t = (time_t)(usec / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}
