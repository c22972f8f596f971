/* tools/acme-tool.h — the ACME options `paf cert` and `paf serve --acme` share. */
#pragma once

#include <stdint.h>

#include "paf-tool.h"

#define TOOL_ACME_MAX_NAMES 100
#define TOOL_ACME_MAX_EMAILS 16
#define TOOL_ACME_MAX_OWNED (TOOL_ACME_MAX_NAMES + TOOL_ACME_MAX_EMAILS)

/* getopt codes of the shared options. */
enum {
        TOOL_ACME_NAME = 1024,
        TOOL_ACME_EMAIL,
        TOOL_ACME_URL,
        TOOL_ACME_STAGING,
        TOOL_ACME_CACERT,
        TOOL_ACME_AGREE_TOS,
        TOOL_ACME_CHALLENGE,
        TOOL_ACME_KEY_TYPE,
        TOOL_ACME_ACCOUNT_KEY_TYPE,
        TOOL_ACME_KEEP_KEY,
        TOOL_ACME_PREFERRED_CHAIN,
        TOOL_ACME_EAB_KID,
        TOOL_ACME_EAB_HMAC_KEY,
        TOOL_ACME_DIR,
};

/* The command line's ACME settings; NULL / 0: not given (paf.conf's [acme]
 * then, or the default). */
typedef struct tool_acme {
        const char *names[TOOL_ACME_MAX_NAMES + 1];
        size_t n_names;
        const char *emails[TOOL_ACME_MAX_EMAILS + 1];
        size_t n_emails;
        const char *url;
        int staging;
        const char *cacert;
        int agree_tos;
        const char *challenge;
        const char *key_type;
        const char *account_key_type;
        int keep_key;
        const char *preferred_chain;
        const char *eab_kid;
        const char *eab_hmac_key;
        const char *dir;
        bool redirect_http;
        char *owned[TOOL_ACME_MAX_OWNED];
        size_t n_owned;
        char *dir_owned;
} tool_acme;

/* One getopt result c with its argument; -EINVAL if c is not an ACME option,
 * else 0 or the usage error's exit status (2). */
int tool_acme_option(tool_acme *a, int c, const char *arg);
/* What the command line left unset, from [acme]. */
int tool_acme_from_config(tool_acme *a, paf_registry *reg);
/* The client's options (pointing into a); 0, or the usage error's exit status. */
int tool_acme_make(tool_acme *a, paf_acme_options *o);
void tool_acme_done(tool_acme *a);
/* $STATE_DIRECTORY/acme (systemd's StateDirectory=), /var/lib/paf/acme for
 * root, else $XDG_STATE_HOME/paf/acme or ~/.local/state/paf/acme. Malloc'ed. */
char *tool_acme_default_dir(void);
void tool_acme_format_time(uint64_t usec, char *buf, size_t size);

/* `paf cert …`: argv[0] is "cert". */
int cmd_cert(int argc, char **argv);
